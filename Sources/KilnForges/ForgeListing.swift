import Foundation
import KilnCore
import NIOHTTP1

/// Reading a forge's paged lists (branches, open pull requests) for the reconciler.
extension ForgeHTTP {
    /// Reads a list page by page: `url(page)` for pages 0, 1, … with `headers`, each answer
    /// decoded by `decode` into its items and whether more pages follow, until one says none
    /// does, `enough` says the items so far suffice, or `ForgeHeads.maxPages` pages were read.
    func pages<Item>(
        headers: [(String, String)], url: (Int) -> String, enough: ([Item]) -> Bool = { _ in false },
        decode: ([UInt8]) throws -> (items: [Item], more: Bool)
    ) async throws(ForgeAPIError) -> [Item] {
        var items: [Item] = []
        for page in 0..<ForgeHeads.maxPages {
            let address = url(page)
            let body = try await send(.GET, address, headers: headers)
            let decoded: (items: [Item], more: Bool)
            do {
                decoded = try decode(body)
            } catch {
                throw .rejected(status: 0, body: "GET \(address): the answer is not what the forge documents: \(JSONErrors.describe(error))")
            }
            items += decoded.items
            if !decoded.more || decoded.items.isEmpty || enough(items) { break }
        }
        return items
    }

    /// Decodes one JSON answer.
    func object<T: Decodable>(_ type: T.Type, _ url: String, headers: [(String, String)]) async throws(ForgeAPIError) -> T {
        let body = try await send(.GET, url, headers: headers)
        do {
            return try JSONDecoder().decode(type, from: Data(body))
        } catch {
            throw .rejected(status: 0, body: "GET \(url): the answer is not what the forge documents: \(JSONErrors.describe(error))")
        }
    }
}

/// Timestamps as forges write them: ISO 8601, with or without fractions of a second, `Z` or an offset.
enum ForgeDates {
    static func parse(_ text: String?) -> Date? {
        guard let text else { return nil }
        // Fractions of any length (Bitbucket writes microseconds) are dropped: a second is precise enough.
        var whole = text
        if let dot = text.firstIndex(of: ".") {
            let rest = text[text.index(after: dot)...]
            let digits = rest.prefix { $0.isNumber }
            whole = String(text[..<dot]) + rest.dropFirst(digits.count)
        }
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime]
        return formatter.date(from: whole)
    }

    /// `date` as ISO 8601 in UTC, for query parameters.
    static func format(_ date: Date) -> String {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime]
        return formatter.string(from: date)
    }

    /// The pull requests updated at or after `since` (all when nil; one without a time counts).
    static func recent(_ pulls: [OpenPullRequest], since: Date?) -> [OpenPullRequest] {
        guard let since else { return pulls }
        return pulls.filter { ($0.updatedAt ?? since) >= since }
    }

    /// For a listing newest first: whether the pages so far reach back past `since`.
    static func reached(_ since: Date?) -> ([OpenPullRequest]) -> Bool {
        { pulls in
            guard let since, let oldest = pulls.last?.updatedAt else { return false }
            return oldest < since
        }
    }
}
