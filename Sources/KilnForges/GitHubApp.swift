import AsyncHTTPClient
import Crypto
import Foundation
import KilnCore
import Synchronization
import _CryptoExtras
import NIOHTTP1

/// A GitHub App's credentials: a JWT signed RS256 with the App's private key is exchanged for
/// an installation token per repository, cached until five minutes before it expires; concurrent
/// requests for a repository share one exchange.
public final class GitHubApp: AccessTokenSource {
    private let appID: String
    private let key: _RSA.Signing.PrivateKey
    private let apiURL: String
    private let api: ForgeHTTP
    private let tokens = Mutex<[String: CachedToken]>([:])

    private enum CachedToken {
        case ready(Secret, expires: Date)
        case exchanging(Task<(token: Secret, expires: Date), any Error>)
    }

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
        let cached = tokens.withLock { tokens -> CachedToken in
            if let cached = tokens[repository] {
                switch cached {
                case .ready(_, let expires) where expires.timeIntervalSinceNow <= 300: break
                case .ready, .exchanging: return cached
                }
            }
            // One exchange per repository at a time: statuses posted together share it.
            let task = Task { try await self.exchange(repository) }
            tokens[repository] = .exchanging(task)
            return .exchanging(task)
        }
        let task: Task<(token: Secret, expires: Date), any Error>
        switch cached {
        case .ready(let token, _): return token
        case .exchanging(let exchanging): task = exchanging
        }
        let result = await task.result
        tokens.withLock { tokens in
            guard case .exchanging(let current) = tokens[repository], current == task else { return }
            switch result {
            case .success(let minted): tokens[repository] = .ready(minted.token, expires: minted.expires)
            case .failure: tokens[repository] = nil
            }
        }
        switch result {
        case .success(let minted): return minted.token
        case .failure(let error as ForgeAPIError): throw error
        case .failure(let error): throw .rejected(status: 0, body: "GitHub App token exchange failed: \(error)")
        }
    }

    /// Forgets a repository's token after GitHub refused it, unless it was replaced meanwhile.
    func forget(_ token: Secret, of repository: String) {
        tokens.withLock { tokens in
            if case .ready(let cached, _) = tokens[repository], cached == token { tokens[repository] = nil }
        }
    }

    /// Exchanges a fresh JWT for an installation token for the repository's installation.
    private func exchange(_ repository: String) async throws(ForgeAPIError) -> (token: Secret, expires: Date) {
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
        return (Secret(token), expires)
    }

    static func base64URL(_ data: Data) -> String {
        data.base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }
}
