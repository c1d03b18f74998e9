import Foundation
import Synchronization

/// Where a job pushes its outputs' closure the way the `cachix` client does: a Cachix-compatible
/// API (`<host>/api/v1/cache/<name>`), with the request's token and signing key. The secrets
/// are kept in memory only (`AdHocSecrets`), never in the database.
public struct CachixPush: Sendable, Hashable {
    /// `https://cachix.org` or a self-hosted server's base URL, without a trailing `/`.
    public var host: String
    /// The cache's name.
    public var cache: String
    /// Sent as `Authorization: Bearer`; may be empty.
    public var token: Secret
    /// base64 of the 64-byte ed25519 secret key that signs each narinfo; nil leaves signing to the server.
    public var signingKey: Secret?

    /// Creates a push.
    public init(host: String, cache: String, token: Secret, signingKey: Secret?) {
        self.host = host
        self.cache = cache
        self.token = token
        self.signingKey = signingKey
    }

    /// `http://cache.example.com/default` → host `http://cache.example.com`, cache `default`, as
    /// the Iglu Builder splits its `target`; nil for anything else.
    public static func split(_ target: String) -> (host: String, cache: String)? {
        var target = target
        while target.hasSuffix("/") { target.removeLast() }
        guard let slash = target.lastIndex(of: "/"), let components = URLComponents(string: target),
            ["http", "https"].contains(components.scheme?.lowercased() ?? ""), components.host != nil,
            components.user == nil, components.password == nil, components.query == nil, components.fragment == nil
        else { return nil }
        let cache = String(target[target.index(after: slash)...])
        let host = String(target[..<slash])
        guard cache.range(of: "^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$", options: .regularExpression) != nil,
            URLComponents(string: host)?.host != nil
        else { return nil }
        return (host, cache)
    }

    /// A description without secrets: `cachix cache default at http://cache.example.com`.
    public var display: String { "cachix cache \(cache) at \(host)" }
}

/// Secrets of ad-hoc builds, by the build's id in the build service (`adhoc/<id>`), held in memory
/// only: a restart loses them, and a build that needed them fails saying so.
public final class AdHocSecrets: Sendable {
    private let pushes = Mutex<[String: CachixPush]>([:])

    /// An empty store.
    public init() {}

    /// Keeps `push` for the build on branch `adhoc/<id>`.
    public func keep(_ push: CachixPush, for id: String) { pushes.withLock { $0[id] = push } }

    /// The push of the build on ref `ref`, if one is kept.
    public func cachix(forRef ref: String) -> CachixPush? {
        guard ref.hasPrefix("refs/heads/adhoc/") else { return nil }
        let id = String(ref.dropFirst("refs/heads/adhoc/".count))
        return pushes.withLock { $0[id] }
    }

    /// Forgets the secrets of builds that ended.
    public func forget(ref: String) {
        guard ref.hasPrefix("refs/heads/adhoc/") else { return }
        _ = pushes.withLock { $0.removeValue(forKey: String(ref.dropFirst("refs/heads/adhoc/".count))) }
    }
}

/// nix's hash encodings.
public enum NixHash {
    /// nix's base32 alphabet.
    public static let alphabet = Array("0123456789abcdfghijklmnpqrsvwxyz")

    /// `bytes` in nix's base32.
    public static func nix32(_ bytes: [UInt8]) -> String {
        let length = (bytes.count * 8 - 1) / 5 + 1
        var text = ""
        for n in stride(from: length - 1, through: 0, by: -1) {
            let bit = n * 5
            let index = bit / 8
            let shift = bit % 8
            let low = Int(bytes[index]) >> shift
            let high = index + 1 < bytes.count ? Int(bytes[index + 1]) << (8 - shift) : 0
            text.append(alphabet[(low | high) & 31])
        }
        return text
    }

    /// A `sha256-<base64>` or `sha256:<nix32>` hash as nix32; nil for anything else.
    public static func sha256Nix32(_ hash: String) -> String? {
        if hash.hasPrefix("sha256:") { return String(hash.dropFirst(7)) }
        guard hash.hasPrefix("sha256-"), let bytes = Data(base64Encoded: String(hash.dropFirst(7))), bytes.count == 32 else { return nil }
        return nix32(Array(bytes))
    }
}

