import AsyncHTTPClient
import Foundation
import KilnCore
import NIOCore
import NIOHTTP1

/// Requests to a forge's API, with answers sorted into delivered, retry or refused.
struct ForgeHTTP: Sendable {
    var client: HTTPClient
    var timeout: TimeAmount = .seconds(15)

    /// Sends a request with a JSON body (any JSONSerialization value) and returns the body of a
    /// 2xx answer.
    /// - Throws: `.transient` for network errors, 5xx and 429 (with `Retry-After`), and for a
    ///   403 that reports an exhausted rate limit; `.rejected` for any other answer.
    @discardableResult
    func send(_ method: HTTPMethod, _ url: String, headers: [(String, String)], json: Any? = nil) async throws(ForgeAPIError)
        -> [UInt8]
    {
        var request = HTTPClientRequest(url: url)
        request.method = method
        request.headers.add(name: "User-Agent", value: "kiln")
        for (name, value) in headers { request.headers.add(name: name, value: value) }
        if let json {
            let data: Data
            do {
                data = try JSONSerialization.data(withJSONObject: json, options: [.sortedKeys, .withoutEscapingSlashes])
            } catch {
                throw .rejected(status: 0, body: "could not encode the request: \(error)")
            }
            request.headers.add(name: "Content-Type", value: "application/json")
            request.body = .bytes(ByteBuffer(bytes: data))
        }
        let response: HTTPClientResponse
        let answer: ByteBuffer
        do {
            response = try await client.execute(request, timeout: timeout)
            answer = try await response.body.collect(upTo: 4 << 20)
        } catch {
            throw .transient("\(method) \(url): \(error)", retryAfter: nil)
        }
        let code = Int(response.status.code)
        let text = String(buffer: answer)
        if (200..<300).contains(code) { return Array(buffer: answer) }
        let retryAfter = Self.retryAfter(response.headers)
        if code == 429 || code >= 500 {
            throw .transient("HTTP \(code): \(text.prefix(300))", retryAfter: retryAfter)
        }
        if code == 403, response.headers.first(name: "x-ratelimit-remaining") == "0" {
            let reset = response.headers.first(name: "x-ratelimit-reset").flatMap(TimeInterval.init)
            let wait = reset.map { Duration.seconds(max(1, Int64($0 - Date().timeIntervalSince1970))) }
            throw .transient("HTTP 403: rate limit exhausted", retryAfter: retryAfter ?? wait ?? .seconds(60))
        }
        throw .rejected(status: code, body: text)
    }

    /// `Retry-After` as seconds or an HTTP date.
    static func retryAfter(_ headers: HTTPHeaders) -> Duration? {
        guard let value = headers.first(name: "retry-after")?.trimmingCharacters(in: .whitespaces) else { return nil }
        if let seconds = Int64(value) { return .seconds(max(0, seconds)) }
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "GMT")
        formatter.dateFormat = "EEE, dd MMM yyyy HH:mm:ss zzz"
        guard let date = formatter.date(from: value) else { return nil }
        return .seconds(max(0, Int64(date.timeIntervalSinceNow.rounded(.up))))
    }

    /// One URL path segment, percent-encoded (`/` too, as GitLab's project paths need).
    static func segment(_ text: String) -> String {
        var allowed = CharacterSet.alphanumerics
        allowed.insert(charactersIn: "-._~")
        return text.addingPercentEncoding(withAllowedCharacters: allowed) ?? text
    }

    /// `owner/name` as two path segments; nil when it is not two non-empty parts.
    static func ownerAndName(_ repository: String) -> (String, String)? {
        let parts = repository.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, !parts[0].isEmpty, !parts[1].isEmpty else { return nil }
        return (segment(String(parts[0])), segment(String(parts[1])))
    }

    /// `text` cut to at most `limit` characters, ending with "…" when cut.
    static func truncate(_ text: String, to limit: Int) -> String {
        text.count <= limit ? text : String(text.prefix(limit - 1)) + "…"
    }
}
