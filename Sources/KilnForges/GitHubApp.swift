import AsyncHTTPClient
import Crypto
import Foundation
import KilnCore
import Synchronization
import _CryptoExtras

/// A GitHub App's credentials: a JWT signed RS256 with the App's private key is exchanged for
/// an installation token per repository, cached until five minutes before it expires.
public final class GitHubApp: AccessTokenSource {
    private let appID: String
    private let key: _RSA.Signing.PrivateKey
    private let apiURL: String
    private let api: ForgeHTTP
    private let tokens = Mutex<[String: (token: Secret, expires: Date)]>([:])

    /// Creates the credentials from the App's id (or client id) and its PEM private key.
    /// - Throws: when the key is not an RSA private key in PEM.
    public init(appID: String, privateKeyPEM: String, apiURL: String, client: HTTPClient = .shared) throws {
        self.appID = appID
        self.key = try _RSA.Signing.PrivateKey(pemRepresentation: privateKeyPEM)
        self.apiURL = apiURL.hasSuffix("/") ? String(apiURL.dropLast()) : apiURL
        self.api = ForgeHTTP(client: client)
    }

    /// A JWT for the App: issued a minute ago (clock drift), valid nine minutes.
    func jwt(now: Date = Date()) throws(ForgeAPIError) -> String {
        let header = #"{"alg":"RS256","typ":"JWT"}"#
        let issued = Int(now.timeIntervalSince1970) - 60
        let claims = #"{"iat":\#(issued),"exp":\#(issued + 600),"iss":"\#(appID)"}"#
        let input = Self.base64URL(Data(header.utf8)) + "." + Self.base64URL(Data(claims.utf8))
        do {
            let signature = try key.signature(for: Data(input.utf8), padding: .insecurePKCS1v1_5)
            return input + "." + Self.base64URL(signature.rawRepresentation)
        } catch {
            throw .rejected(status: 0, body: "cannot sign the GitHub App's JWT: \(error)")
        }
    }

    public func accessToken(for repository: String) async throws(ForgeAPIError) -> Secret {
        if let cached = tokens.withLock({ $0[repository] }), cached.expires.timeIntervalSinceNow > 300 {
            return cached.token
        }
        guard let (owner, name) = ForgeHTTP.ownerAndName(repository) else {
            throw .rejected(status: 0, body: "repository '\(repository)' is not owner/name")
        }
        let jwt = try jwt()
        let headers = [("Authorization", "Bearer \(jwt)"), ("Accept", "application/vnd.github+json")]
        let installation = try await api.send(.GET, "\(apiURL)/repos/\(owner)/\(name)/installation", headers: headers)
        guard let id = ((try? JSONSerialization.jsonObject(with: Data(installation))) as? [String: Any])?["id"] as? NSNumber else {
            throw .rejected(status: 0, body: "GitHub's installation answer has no id")
        }
        let answer = try await api.send(.POST, "\(apiURL)/app/installations/\(id.int64Value)/access_tokens", headers: headers)
        guard let object = (try? JSONSerialization.jsonObject(with: Data(answer))) as? [String: Any],
            let token = object["token"] as? String
        else { throw .rejected(status: 0, body: "GitHub's access token answer has no token") }
        let expires = (object["expires_at"] as? String).flatMap { ISO8601DateFormatter().date(from: $0) }
            ?? Date().addingTimeInterval(3600)
        tokens.withLock { $0[repository] = (Secret(token), expires) }
        return Secret(token)
    }

    /// Forgets a repository's token, after GitHub refused it.
    func forget(_ repository: String) { _ = tokens.withLock { $0.removeValue(forKey: repository) } }

    static func base64URL(_ data: Data) -> String {
        data.base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }
}
