import Crypto
import Foundation

/// What an API token may do. Each scope includes the ones before it.
public enum TokenScope: String, Sendable, Hashable, Codable, CaseIterable, Comparable {
    /// Pages, logs, the API and events (needed only with `server.private: true`), and `/metrics`.
    case read
    /// Also cancel, re-run and approve.
    case control
    /// Everything, like `server.admin-token-file`'s token.
    case admin

    public static func < (a: TokenScope, b: TokenScope) -> Bool {
        allCases.firstIndex(of: a)! < allCases.firstIndex(of: b)!
    }
}

/// An API token as stored: never the token itself, only its digest.
public struct APIToken: Sendable, Hashable {
    /// Database id; the token's text names it (`kiln_<id>_<secret>`).
    public var id: Int64
    /// Its name, unique.
    public var name: String
    /// What it may do.
    public var scope: TokenScope
    /// When it was made.
    public var createdAt: Date
    /// When it was revoked; nil while it works.
    public var revokedAt: Date?

    /// Creates a record.
    public init(id: Int64, name: String, scope: TokenScope, createdAt: Date, revokedAt: Date? = nil) {
        self.id = id
        self.name = name
        self.scope = scope
        self.createdAt = createdAt
        self.revokedAt = revokedAt
    }
}

/// Why a token could not be made or changed.
public enum TokenError: Error, Sendable, Hashable, CustomStringConvertible {
    /// A token of this name exists already.
    case nameTaken(String)
    /// No token has this name.
    case unknown(String)
    /// Names are 1 to 64 letters, digits, `.`, `_` and `-`.
    case invalidName(String)

    public var description: String {
        switch self {
        case .nameTaken(let name): return "a token named '\(name)' exists; revoke it first or choose another name"
        case .unknown(let name): return "no token is named '\(name)'"
        case .invalidName(let name): return "'\(name)' is not a token name: use 1 to 64 letters, digits, '.', '_' and '-'"
        }
    }
}

/// API tokens, kept as SHA-256 digests of their secrets. Safe to call concurrently.
public protocol TokenStore: Sendable {
    /// Records a token named `name` whose secret has `digest`; throws `TokenError.nameTaken`.
    func createToken(name: String, scope: TokenScope, digest: [UInt8], at now: Date) async throws -> APIToken

    /// Every token, revoked ones included, oldest first.
    func tokens() async throws -> [APIToken]

    /// Revokes the token named `name`; throws `TokenError.unknown`.
    func revokeToken(name: String, at now: Date) async throws

    /// The name, scope and digest of token `id` while it is not revoked; nil otherwise.
    func activeToken(_ id: Int64) async throws -> (name: String, scope: TokenScope, digest: [UInt8])?
}

/// Making and checking token texts: `kiln_<id>_<secret>`, the secret 32 random bytes in hex.
public enum TokenText {
    /// Makes a token named `name`; returns the record and its text, which is shown once.
    public static func create(name: String, scope: TokenScope, in store: any TokenStore, at now: Date = Date()) async throws
        -> (token: APIToken, text: String)
    {
        guard name.range(of: "^[A-Za-z0-9._-]{1,64}$", options: .regularExpression) != nil else { throw TokenError.invalidName(name) }
        let secret = randomHex(bytes: 32)
        let token = try await store.createToken(name: name, scope: scope, digest: digest(secret), at: now)
        return (token, "kiln_\(token.id)_\(secret)")
    }

    /// The scope `text` grants; nil for anything that is not a live token of `store`. The secret is
    /// compared as a fixed-length digest, in constant time.
    public static func scope(of text: String, in store: any TokenStore) async -> TokenScope? {
        await identify(text, in: store)?.scope
    }

    /// The live token `text` is (its id, name and scope); nil for anything else.
    public static func identify(_ text: String, in store: any TokenStore) async -> (id: Int64, name: String, scope: TokenScope)? {
        let parts = text.split(separator: "_", maxSplits: 2, omittingEmptySubsequences: false)
        guard parts.count == 3, parts[0] == "kiln", let id = Int64(parts[1]), parts[2].utf8.count == 64,
            let stored = try? await store.activeToken(id), ConstantTime.equals(digest(String(parts[2])), stored.digest)
        else { return nil }
        return (id, stored.name, stored.scope)
    }

    /// `bytes` random bytes as lowercase hex: secrets, session ids, CSRF tokens.
    public static func randomHex(bytes: Int) -> String {
        var generator = SystemRandomNumberGenerator()
        return (0..<bytes).map { _ in String(format: "%02x", UInt8.random(in: 0...255, using: &generator)) }.joined()
    }

    static func digest(_ secret: String) -> [UInt8] { Array(SHA256.hash(data: Array(secret.utf8))) }
}
