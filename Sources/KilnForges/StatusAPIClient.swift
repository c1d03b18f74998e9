import AsyncHTTPClient
import Foundation
import KilnCore
import NIOCore
import NIOHTTP1

/// Posts JSON to a forge's status API and sorts the answer into delivered, retry or refused.
struct StatusAPIClient: Sendable {
    var client: HTTPClient
    var timeout: TimeAmount = .seconds(15)

    /// POSTs `body` to `url` with `headers`; returns on a 2xx answer.
    /// - Throws: `.transient` for network errors, 5xx and 429 (with `Retry-After`), and for a
    ///   403 that reports an exhausted rate limit; `.rejected` for any other answer.
    func post(_ url: String, headers: [(String, String)], json body: [String: String]) async throws(ForgeAPIError) {
        var request = HTTPClientRequest(url: url)
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/json")
        request.headers.add(name: "User-Agent", value: "kiln")
        for (name, value) in headers { request.headers.add(name: name, value: value) }
        let data: Data
        do {
            data = try JSONSerialization.data(withJSONObject: body, options: [.sortedKeys])
        } catch {
            throw .rejected(status: 0, body: "could not encode the status: \(error)")
        }
        request.body = .bytes(ByteBuffer(bytes: data))
        let response: HTTPClientResponse
        let answer: String
        do {
            response = try await client.execute(request, timeout: timeout)
            let bytes = try await response.body.collect(upTo: 64 << 10)
            answer = String(buffer: bytes)
        } catch {
            throw .transient("\(url): \(error)", retryAfter: nil)
        }
        let code = Int(response.status.code)
        if (200..<300).contains(code) { return }
        let retryAfter = Self.retryAfter(response.headers)
        if code == 429 || code >= 500 {
            throw .transient("HTTP \(code): \(answer.prefix(300))", retryAfter: retryAfter)
        }
        if code == 403, response.headers.first(name: "x-ratelimit-remaining") == "0" {
            let reset = response.headers.first(name: "x-ratelimit-reset").flatMap(TimeInterval.init)
            let wait = reset.map { Duration.seconds(max(1, Int64($0 - Date().timeIntervalSince1970))) }
            throw .transient("HTTP 403: rate limit exhausted", retryAfter: retryAfter ?? wait ?? .seconds(60))
        }
        throw .rejected(status: code, body: answer)
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

    /// One URL path segment, percent-encoded.
    static func segment(_ text: String) -> String {
        var allowed = CharacterSet.alphanumerics
        allowed.insert(charactersIn: "-._~")
        return text.addingPercentEncoding(withAllowedCharacters: allowed) ?? text
    }

    /// `text` cut to at most `limit` characters, ending with "…" when cut.
    static func truncate(_ text: String, to limit: Int) -> String {
        text.count <= limit ? text : String(text.prefix(limit - 1)) + "…"
    }
}
