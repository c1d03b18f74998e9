import Foundation
import HTTPTypes
import Hummingbird
import KilnCore
import Synchronization

/// Signed-in browsers: a session cookie (`HttpOnly`, `SameSite=Lax` so that a forge's links to
/// a private server keep it, `Secure` on https) made from a valid token, and a CSRF token that
/// every form carries. Kept in memory: a restart signs everyone out. Sessions last 12 hours, and
/// end at once when their API token is revoked (`Access.session` checks it on every request).
final class Sessions: Sendable {
    /// One browser's sign-in.
    struct Session: Sendable {
        /// What its token allowed.
        var scope: TokenScope
        /// The API token it was made from; nil for the admin token.
        var tokenID: Int64?
        /// Who signed in, for audit records: `token NAME` or `the admin token`.
        var who: String
        /// The token forms must carry.
        var csrf: String
        /// When it ends.
        var expires: Date
    }

    static let cookie = "kiln_session"
    static let lifetime: TimeInterval = 12 * 3600
    private let sessions = Mutex<[String: Session]>([:])
    /// Whether cookies get `Secure` (the public URL is https).
    let secure: Bool

    init(secure: Bool) { self.secure = secure }

    /// Starts a session for `scope`; returns its `Set-Cookie` value.
    func start(_ scope: TokenScope, tokenID: Int64?, who: String, now: Date = Date()) -> String {
        let id = TokenText.randomHex(bytes: 32)
        sessions.withLock { sessions in
            sessions = sessions.filter { $0.value.expires > now }
            sessions[id] = Session(
                scope: scope, tokenID: tokenID, who: who, csrf: TokenText.randomHex(bytes: 32),
                expires: now.addingTimeInterval(Self.lifetime))
        }
        return "\(Self.cookie)=\(id); Path=/; HttpOnly; SameSite=Lax; Max-Age=\(Int(Self.lifetime))\(secure ? "; Secure" : "")"
    }

    /// The session `request`'s cookie names, while it lasts.
    func session(_ request: Request, now: Date = Date()) -> Session? {
        guard let id = Self.cookieValue(request.headers[.cookie] ?? "") else { return nil }
        return sessions.withLock { sessions in
            guard let session = sessions[id], session.expires > now else { return nil }
            return session
        }
    }

    /// Ends `request`'s session; returns the `Set-Cookie` value that clears the cookie.
    func end(_ request: Request) -> String {
        if let id = Self.cookieValue(request.headers[.cookie] ?? "") { _ = sessions.withLock { $0.removeValue(forKey: id) } }
        return "\(Self.cookie)=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0\(secure ? "; Secure" : "")"
    }

    /// Whether `presented` is `session`'s CSRF token (compared in constant time).
    static func csrfMatches(_ presented: String?, _ session: Session) -> Bool {
        guard let presented else { return false }
        return ConstantTime.equals(Array(presented.utf8), Array(session.csrf.utf8))
    }

    private static func cookieValue(_ header: String) -> String? {
        for part in header.split(separator: ";") {
            let pair = part.trimmingCharacters(in: .whitespaces).split(separator: "=", maxSplits: 1)
            if pair.count == 2, pair[0] == cookie { return String(pair[1]) }
        }
        return nil
    }
}

/// A form body's fields (`application/x-www-form-urlencoded`).
enum FormBody {
    static func fields(_ request: Request, limit: Int = 16 << 10) async throws -> [String: String] {
        var request = request
        let buffer = try await request.collectBody(upTo: limit)
        var components = URLComponents()
        components.percentEncodedQuery = String(buffer: buffer).replacingOccurrences(of: "+", with: "%20")
        var fields: [String: String] = [:]
        for item in components.queryItems ?? [] { fields[item.name] = item.value ?? "" }
        return fields
    }
}
