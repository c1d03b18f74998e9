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
        if (200..<300).contains(code) { return Array(buffer: answer) }
        throw Self.failure(code: code, headers: response.headers, body: String(buffer: answer), now: Date())
    }

    /// The longest wait a forge's hint can ask for; a longer or unreadable hint is capped here.
    static let maxWait: Duration = .seconds(3600)

    /// What a non-2xx answer means: worth retrying (network trouble, 5xx, 429, and any rate
    /// limit, GitHub's secondary limit among them: a 403 with `Retry-After`, with no requests
    /// left, or whose body names a rate limit), or a refusal that retrying would not change.
    static func failure(code: Int, headers: HTTPHeaders, body: String, now: Date) -> ForgeAPIError {
        let retryAfter = Self.retryAfter(headers, now: now)
        if code == 429 || code >= 500 {
            return .transient("HTTP \(code): \(body.prefix(300))", retryAfter: retryAfter)
        }
        if code == 403 {
            let exhausted = headers.first(name: "x-ratelimit-remaining")?.trimmingCharacters(in: .whitespaces) == "0"
            let named = body.range(of: "rate limit", options: .caseInsensitive) != nil
                || body.range(of: "abuse detection", options: .caseInsensitive) != nil
            if retryAfter != nil || exhausted || named {
                let reset = seconds(headers.first(name: "x-ratelimit-reset")).map { until in
                    Duration.seconds(min(max(1, until - Int64(now.timeIntervalSince1970)), maxWait.components.seconds))
                }
                // GitHub: without a hint, wait at least a minute before the secondary limit lifts.
                return .transient("HTTP 403 (rate limited): \(body.prefix(300))", retryAfter: retryAfter ?? reset ?? .seconds(60))
            }
        }
        return .rejected(status: code, body: body)
    }

    /// `Retry-After` as seconds or an HTTP date, from 0 to `maxWait`; nil when absent or
    /// unreadable (`nan`, a negative or absurd number, a malformed date).
    static func retryAfter(_ headers: HTTPHeaders, now: Date = Date()) -> Duration? {
        guard let value = headers.first(name: "retry-after")?.trimmingCharacters(in: .whitespaces) else { return nil }
        if let seconds = seconds(value) { return .seconds(min(max(0, seconds), maxWait.components.seconds)) }
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "GMT")
        formatter.dateFormat = "EEE, dd MMM yyyy HH:mm:ss zzz"
        guard let date = formatter.date(from: value) else { return nil }
        let wait = date.timeIntervalSince(now).rounded(.up)
        guard wait.isFinite else { return nil }
        return .seconds(Int64(min(max(0, wait), Double(maxWait.components.seconds))))
    }

    /// A whole number of seconds written as digits (an optional '-'), at most 18 of them; nil
    /// for anything else, so that `nan`, `1e99` or `inf` never reach an integer conversion.
    static func seconds(_ text: String?) -> Int64? {
        guard let text = text?.trimmingCharacters(in: .whitespaces), !text.isEmpty, text.count <= 19 else { return nil }
        let digits = text.hasPrefix("-") ? text.dropFirst() : Substring(text)
        guard !digits.isEmpty, digits.count <= 18, digits.allSatisfy({ $0.isASCII && $0.isNumber }) else { return nil }
        return Int64(text)
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
