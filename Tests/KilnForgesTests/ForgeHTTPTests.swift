import Foundation
import KilnCore
import NIOHTTP1
import Testing

@testable import KilnForges

/// How forge answers are sorted: what is retried, how long to wait, what is refused.
@Suite struct ForgeHTTPTests {
    static let now = Date(timeIntervalSince1970: 1_800_000_000)

    static func headers(_ pairs: [(String, String)]) -> HTTPHeaders { HTTPHeaders(pairs) }

    /// (label, code, headers, body, expected retry-after in seconds or nil for a refusal)
    static let answers: [(String, Int, [(String, String)], String, Int64?)] = [
        ("secondary rate limit: 403 with Retry-After, requests left", 403,
         [("Retry-After", "30"), ("x-ratelimit-remaining", "4000")], #"{"message":"You have exceeded a secondary rate limit."}"#, 30),
        ("primary limit exhausted, reset in 120 s", 403,
         [("x-ratelimit-remaining", "0"), ("x-ratelimit-reset", "1800000120")], #"{"message":"API rate limit exceeded"}"#, 120),
        ("403 whose body names a rate limit, no headers", 403, [], #"{"message":"secondary rate limit"}"#, 60),
        ("reset of nan does not trap", 403, [("x-ratelimit-remaining", "0"), ("x-ratelimit-reset", "nan")], "limited", 60),
        ("reset in the past waits a second", 403, [("x-ratelimit-remaining", "0"), ("x-ratelimit-reset", "5")], "", 1),
        ("reset far away is capped at an hour", 403,
         [("x-ratelimit-remaining", "0"), ("x-ratelimit-reset", "999999999999999999")], "", 3600),
        ("429 with a negative Retry-After", 429, [("Retry-After", "-5")], "", 0),
        ("429 with a huge Retry-After", 429, [("Retry-After", "99999999999999999999999")], "", nil),
        ("503 with Retry-After nan", 503, [("Retry-After", "nan")], "", nil),
        ("503 with Retry-After inf", 503, [("Retry-After", "inf")], "", nil),
        ("503 with Retry-After of a day", 503, [("Retry-After", "86400")], "", 3600),
        ("503 with an HTTP date 90 s ahead", 503, [("Retry-After", "Fri, 15 Jan 2027 08:01:30 GMT")], "", 90),
        ("503 with an HTTP date in the past", 503, [("Retry-After", "Fri, 15 Jan 2027 07:00:00 GMT")], "", 0),
        ("503 with a malformed date", 503, [("Retry-After", "soon")], "", nil),
    ]

    @Test(arguments: answers)
    func answerIsSorted(label: String, code: Int, headers: [(String, String)], body: String, wait: Int64?) {
        let failure = ForgeHTTP.failure(code: code, headers: Self.headers(headers), body: body, now: Self.now)
        guard case .transient(_, let retryAfter) = failure else {
            Issue.record("\(label): expected a retry, got \(failure)")
            return
        }
        #expect(retryAfter == wait.map { .seconds($0) }, "\(label)")
    }

    /// Refusals that retrying would not change are still refusals.
    @Test(arguments: [
        (403, [("x-ratelimit-remaining", "4999")], #"{"message":"Resource not accessible by integration"}"#),
        (404, [], "Not Found"), (422, [("Retry-After", "5")], "Validation Failed"), (401, [], "Bad credentials"),
    ] as [(Int, [(String, String)], String)])
    func refusalIsNotRetried(code: Int, headers: [(String, String)], body: String) {
        #expect(ForgeHTTP.failure(code: code, headers: Self.headers(headers), body: body, now: Self.now) == .rejected(status: code, body: body))
    }
}
