import Crypto
import Foundation
import Hummingbird
import Logging
import Synchronization
import _CryptoExtras
import NIOFoundationEssentialsCompat

/// A stand-in for a forge's status API on 127.0.0.1, as strict as the forge's documentation:
/// it checks the credentials, the path, the state words and the field lengths, answers like
/// the forge, and records everything it received. For GitHub it also plays a GitHub App's
/// side (installation tokens for a JWT it verifies) and keeps check runs.
public final class FakeForge: Sendable {
    /// The forges whose APIs it imitates.
    public enum Kind: String, Sendable, CaseIterable {
        case github, gitlab
        case bitbucketCloud = "bitbucket-cloud"
        case bitbucketServer = "bitbucket-server"
        case gitea
    }

    /// One status the forge accepted, in the forge's own words.
    public struct Status: Sendable, Hashable {
        /// `owner/name` (`PROJECT/slug`, `group/name`) from the path.
        public var repository: String
        /// Commit from the path.
        public var sha: String
        /// The forge's state word (`success`, `SUCCESSFUL`, `canceled`, …).
        public var state: String
        /// The context, name or key.
        public var context: String
        /// Description.
        public var description: String
        /// Link.
        public var targetURL: String
        /// Branch (`ref`, `refname`), when sent.
        public var branch: String?
        /// When the request arrived.
        public var receivedAt: ContinuousClock.Instant
        /// A check run's markdown summary.
        public var summary: String? = nil
        /// A check run's action identifiers.
        public var actions: [String] = []
    }

    struct State {
        var accepted: [Status] = []
        var attempts = 0
        var refusals: [String] = []
        var scripted: [(status: Int, retryAfter: Int?)] = []
        var minted: [String: Date] = [:]
        var exchanges = 0
        var checkRuns: [Int: (name: String, sha: String)] = [:]
        var heads: [String: Heads] = [:]
        var reads: [String] = []
    }

    /// Which forge this is.
    public let kind: Kind
    /// The static token requests may carry.
    public let token: String
    /// Repositories that exist.
    public let repositories: Set<String>
    /// With a GitHub App: its public key (to verify JWTs) and its id.
    private let app: (key: _RSA.Signing.PublicKey, id: String)?
    /// How long minted installation tokens live.
    private let tokenLifetime: TimeInterval
    let state = Mutex(State())
    private let server: TestHTTPServer

    /// Starts the fake on a free port.
    public init(
        _ kind: Kind, token: String, repositories: Set<String>, appPublicKeyPEM: String? = nil, appID: String = "1",
        tokenLifetime: TimeInterval = 3600
    ) async throws {
        self.kind = kind
        self.token = token
        self.repositories = repositories
        self.app = try appPublicKeyPEM.map { (try _RSA.Signing.PublicKey(pemRepresentation: $0), appID) }
        self.tokenLifetime = tokenLifetime
        let router = Router()
        let box = Box()
        router.on("/**", method: .post) { request, _ in try await box.fake!.handle(request) }
        router.on("/**", method: .get) { request, _ in try await box.fake!.handle(request) }
        router.on("/**", method: .patch) { request, _ in try await box.fake!.handle(request) }
        server = try await TestHTTPServer.start(router: router)
        box.fake = self
    }

    /// A GitHub with statuses and a token; the name the first tests used.
    public convenience init(token: String, repositories: Set<String>) async throws {
        try await self.init(.github, token: token, repositories: repositories)
    }

    /// The base URL to configure as `api-url`.
    public var url: String { "http://127.0.0.1:\(server.port)" }
    /// Statuses accepted so far, in order.
    public var statuses: [Status] { state.withLock { $0.accepted } }
    /// How many status requests arrived, accepted or not.
    public var attempts: Int { state.withLock { $0.attempts } }
    /// Why requests were refused (strictness violations), in order.
    public var refusals: [String] { state.withLock { $0.refusals } }
    /// How many check runs were created.
    public var checkRunCount: Int { state.withLock { $0.checkRuns.count } }
    /// How many installation tokens were minted.
    public var tokenExchanges: Int { state.withLock { $0.exchanges } }

    /// Revokes every installation token minted so far: the next request with one gets a 401.
    public func revokeInstallationTokens() { state.withLock { $0.minted.removeAll() } }

    /// A fresh RSA key pair for a GitHub App, in PEM.
    public static func appKeyPair() throws -> (privateKeyPEM: String, publicKeyPEM: String) {
        let key = try _RSA.Signing.PrivateKey(keySize: .bits2048)
        return (key.pemRepresentation, key.publicKey.pemRepresentation)
    }

    /// Answers the next status requests with these HTTP statuses (and `Retry-After` seconds) first.
    public func failNext(_ answers: [(status: Int, retryAfter: Int?)]) { state.withLock { $0.scripted += answers } }

    /// States accepted for one context (and commit), in order.
    /// The states a context went through, a repeated state (pending for queued, then for running) once.
    public func states(_ context: String, sha: String? = nil) -> [String] {
        statuses.filter { $0.context == context && (sha == nil || $0.sha == sha) }.map(\.state)
            .reduce(into: []) { folded, state in
                if folded.last != state { folded.append(state) }
            }
    }

    /// Stops the server.
    public func stop() async { await server.stop() }

    private final class Box: @unchecked Sendable {
        var fake: FakeForge?
    }

    // MARK: Requests

    private func handle(_ request: Request) async throws -> Response {
        var request = request
        let body = try await request.collectBody(upTo: 1 << 20)
        let path = request.uri.path
        let json = (try? JSONSerialization.jsonObject(with: Data(buffer: body))) as? [String: Any] ?? [:]
        if kind == .github, let answer = try githubApp(request, path) { return answer }
        // Reads (the repository, its branches and pull requests) are not status posts: they
        // neither count as attempts nor take scripted failures.
        if request.method == .get, let answer = read(request, segments(path)) { return answer }
        let scripted = state.withLock { state -> (Int, Int?)? in
            state.attempts += 1
            return state.scripted.isEmpty ? nil : state.scripted.removeFirst()
        }
        if let (code, retryAfter) = scripted {
            var headers: HTTPFields = [:]
            if let retryAfter { headers[.retryAfter] = String(retryAfter) }
            return Response(status: .init(code: code), headers: headers, body: .init(byteBuffer: ByteBuffer(string: #"{"message":"scripted failure"}"#)))
        }
        guard authorized(request) else { return refuse(401, "Bad credentials") }
        guard request.headers[.userAgent] != nil else { return refuse(403, "a User-Agent is required") }
        switch kind {
        case .github: return github(request, path, json)
        case .gitlab: return gitlab(path, json)
        case .bitbucketCloud: return bitbucketCloud(path, json)
        case .bitbucketServer: return bitbucketServer(path, json)
        case .gitea: return gitea(path, json)
        }
    }

    func authorized(_ request: Request) -> Bool {
        let header = request.headers[.authorization] ?? ""
        switch kind {
        case .gitlab:
            let privateToken = request.headers.first { $0.name.rawName.lowercased() == "private-token" }?.value
            return privateToken == token || header == "Bearer \(token)"
        case .gitea:
            return header == "token \(token)"
        case .github:
            if header == "Bearer \(token)" { return true }
            let minted = header.hasPrefix("Bearer ") ? String(header.dropFirst(7)) : ""
            return state.withLock { $0.minted[minted].map { $0 > Date() } ?? false }
        case .bitbucketCloud, .bitbucketServer:
            return header == "Bearer \(token)"
        }
    }

    /// The repository a GET of these path segments reads, as each forge's API names it; nil for
    /// any other request.
    func repositoryRead(_ parts: [String]) -> String? {
        switch kind {
        case .github where parts.count == 3 && parts[0] == "repos": return "\(parts[1])/\(parts[2])"
        case .gitea where parts.count == 5 && parts[0...2] == ["api", "v1", "repos"]: return "\(parts[3])/\(parts[4])"
        case .gitlab where parts.count == 4 && parts[0...2] == ["api", "v4", "projects"]: return parts[3]
        case .bitbucketCloud where parts.count == 4 && parts[0...1] == ["2.0", "repositories"]: return "\(parts[2])/\(parts[3])"
        case .bitbucketServer where parts.count == 7 && parts[0...3] == ["rest", "api", "latest", "projects"] && parts[5] == "repos":
            return "\(parts[4])/\(parts[6])"
        default: return nil
        }
    }

    func refuse(_ code: Int, _ message: String) -> Response {
        state.withLock { $0.refusals.append(message) }
        return Response(status: .init(code: code), body: .init(byteBuffer: ByteBuffer(string: "{\"message\":\"\(message)\"}")))
    }

    private func accept(_ status: Status, code: Int = 201, body: String = #"{"id":1}"#) -> Response {
        state.withLock { $0.accepted.append(status) }
        return Response(status: .init(code: code), body: .init(byteBuffer: ByteBuffer(string: body)))
    }

    /// Path segments, percent-decoded one by one (so GitLab's `group%2Fname` stays one segment).
    private func segments(_ path: String) -> [String] {
        path.split(separator: "/").map { $0.removingPercentEncoding ?? String($0) }
    }

    private func isCommit(_ sha: String) -> Bool { sha.count == 40 && sha.allSatisfy(\.isHexDigit) }

    private func github(_ request: Request, _ path: String, _ json: [String: Any]) -> Response {
        let parts = segments(path)
        guard parts.count >= 4, parts[0] == "repos", repositories.contains("\(parts[1])/\(parts[2])") else {
            return refuse(404, "Not Found")
        }
        let repository = "\(parts[1])/\(parts[2])"
        if parts.count == 5, parts[3] == "statuses" {
            guard isCommit(parts[4]) else { return refuse(422, "No commit found for SHA: \(parts[4])") }
            guard let word = json["state"] as? String, ["error", "failure", "pending", "success"].contains(word) else {
                return refuse(422, "Validation Failed: state is not included in the list")
            }
            let description = json["description"] as? String ?? ""
            guard description.count <= 140 else { return refuse(422, "description is too long (maximum is 140 characters)") }
            return accept(
                Status(
                    repository: repository, sha: parts[4], state: word, context: json["context"] as? String ?? "default",
                    description: description, targetURL: json["target_url"] as? String ?? "", receivedAt: .now))
        }
        return checkRuns(request, parts, repository, json)
    }

    /// Check runs: created, found by name, and updated; recorded as statuses with their
    /// status or conclusion as the state.
    private func checkRuns(_ request: Request, _ parts: [String], _ repository: String, _ json: [String: Any]) -> Response {
        if request.method == .get, parts.count == 6, parts[3] == "commits", parts[5] == "check-runs" {
            let name = request.uri.queryParameters.get("check_name") ?? ""
            let runs = state.withLock { state in
                state.checkRuns.filter { $0.value.sha == parts[4] && $0.value.name == name }.map { ["id": $0.key, "name": name] }
            }
            let data = try! JSONSerialization.data(withJSONObject: ["total_count": runs.count, "check_runs": runs])
            return Response(status: .ok, body: .init(byteBuffer: ByteBuffer(bytes: data)))
        }
        guard parts.count >= 4, parts[3] == "check-runs" else { return refuse(404, "Not Found") }
        guard let name = json["name"] as? String, let sha = json["head_sha"] as? String, isCommit(sha) else {
            return refuse(422, "Validation Failed: name and head_sha are required")
        }
        let status = json["status"] as? String ?? "queued"
        guard ["queued", "in_progress", "completed"].contains(status) else { return refuse(422, "status is not included in the list") }
        let conclusions = ["action_required", "cancelled", "failure", "neutral", "success", "skipped", "timed_out"]
        if status == "completed" {
            guard let conclusion = json["conclusion"] as? String, conclusions.contains(conclusion) else {
                return refuse(422, "conclusion is required and must be one of \(conclusions)")
            }
        }
        if let actions = json["actions"] as? [[String: String]] {
            guard actions.count <= 3, actions.allSatisfy({ ($0["label"] ?? "").count <= 20 && ($0["identifier"] ?? "").count <= 20 && ($0["description"] ?? "").count <= 40 })
            else { return refuse(422, "actions: at most 3, label and identifier at most 20, description at most 40 characters") }
        }
        let output = json["output"] as? [String: String] ?? [:]
        guard (output["summary"] ?? "").count <= 65535 else { return refuse(422, "output.summary is too long") }
        let id = request.method == .patch ? Int(parts.last ?? "") ?? 0 : state.withLock { $0.checkRuns.count + 1 }
        state.withLock { $0.checkRuns[id] = (name, sha) }
        return accept(
            Status(
                repository: repository, sha: sha, state: status == "completed" ? json["conclusion"] as! String : status,
                context: name, description: output["title"] ?? "", targetURL: json["details_url"] as? String ?? "",
                branch: nil, receivedAt: .now, summary: output["summary"],
                actions: (json["actions"] as? [[String: String]] ?? []).compactMap { $0["identifier"] }),
            code: request.method == .patch ? 200 : 201, body: "{\"id\":\(id)}")
    }

    /// The GitHub App endpoints: a valid JWT (RS256, the App's key, fresh) gets an installation
    /// and a token that expires after `tokenLifetime`.
    private func githubApp(_ request: Request, _ path: String) throws -> Response? {
        let parts = segments(path)
        let isInstallation = request.method == .get && parts.count == 4 && parts[0] == "repos" && parts[3] == "installation"
        let isExchange = request.method == .post && parts.count == 4 && parts[0] == "app" && parts[3] == "access_tokens"
        guard isInstallation || isExchange else { return nil }
        guard let app, let jwt = request.headers[.authorization].flatMap({ $0.hasPrefix("Bearer ") ? String($0.dropFirst(7)) : nil }),
            Self.verify(jwt, key: app.key, issuer: app.id)
        else { return refuse(401, "A JSON web token could not be decoded") }
        if isInstallation {
            return Response(status: .ok, body: .init(byteBuffer: ByteBuffer(string: #"{"id":4242}"#)))
        }
        guard parts[2] == "4242" else { return refuse(404, "Not Found") }
        let token = "ghs_" + UUID().uuidString.replacingOccurrences(of: "-", with: "")
        let expires = Date().addingTimeInterval(tokenLifetime)
        state.withLock {
            $0.minted[token] = expires
            $0.exchanges += 1
        }
        let stamp = ISO8601DateFormatter().string(from: expires)
        return Response(status: .created, body: .init(byteBuffer: ByteBuffer(string: "{\"token\":\"\(token)\",\"expires_at\":\"\(stamp)\"}")))
    }

    /// Whether a JWT is RS256-signed by `key`, issued by `issuer`, and valid now (at most 10 minutes).
    static func verify(_ jwt: String, key: _RSA.Signing.PublicKey, issuer: String) -> Bool {
        let parts = jwt.split(separator: ".").map(String.init)
        guard parts.count == 3, let header = decode(parts[0]), let claims = decode(parts[1]), let signature = base64URL(parts[2]),
            (try? JSONSerialization.jsonObject(with: header) as? [String: Any])?["alg"] as? String == "RS256",
            let body = try? JSONSerialization.jsonObject(with: claims) as? [String: Any],
            body["iss"] as? String == issuer, let issued = body["iat"] as? Int, let expires = body["exp"] as? Int
        else { return false }
        let now = Int(Date().timeIntervalSince1970)
        guard issued <= now + 60, expires > now, expires - issued <= 600 else { return false }
        return key.isValidSignature(
            _RSA.Signing.RSASignature(rawRepresentation: signature), for: Data((parts[0] + "." + parts[1]).utf8),
            padding: .insecurePKCS1v1_5)
    }

    private static func decode(_ text: String) -> Data? { base64URL(text) }

    private static func base64URL(_ text: String) -> Data? {
        var base64 = text.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        while base64.count % 4 != 0 { base64 += "=" }
        return Data(base64Encoded: base64)
    }

    private func gitlab(_ path: String, _ json: [String: Any]) -> Response {
        let parts = segments(path)
        guard parts.count == 6, parts[0] == "api", parts[1] == "v4", parts[2] == "projects", parts[4] == "statuses" else {
            return refuse(404, "404 Not Found")
        }
        guard repositories.contains(parts[3]) else { return refuse(404, "404 Project Not Found") }
        guard isCommit(parts[5]) else { return refuse(404, "404 Commit Not Found") }
        guard let word = json["state"] as? String, ["pending", "running", "success", "failed", "canceled"].contains(word) else {
            return refuse(400, "state does not have a valid value")
        }
        let name = json["name"] as? String ?? json["context"] as? String ?? "default"
        guard name.count <= 255, (json["description"] as? String ?? "").count <= 255 else { return refuse(400, "name or description is too long") }
        // GitLab's job state machine refuses a transition to the state the job already has.
        let current = statuses.last { $0.sha == parts[5] && $0.context == name }?.state
        if current == word {
            return Response(status: .badRequest, body: .init(byteBuffer: ByteBuffer(string: #"{"message":"Cannot transition status via :enqueue from :pending"}"#)))
        }
        return accept(
            Status(
                repository: parts[3], sha: parts[5], state: word, context: name, description: json["description"] as? String ?? "",
                targetURL: json["target_url"] as? String ?? "", branch: json["ref"] as? String, receivedAt: .now))
    }

    private func bitbucketCloud(_ path: String, _ json: [String: Any]) -> Response {
        let parts = segments(path)
        guard parts.count == 8, parts[0] == "2.0", parts[1] == "repositories", parts[4] == "commit", parts[6] == "statuses",
            parts[7] == "build"
        else { return refuse(404, "Resource not found") }
        guard repositories.contains("\(parts[2])/\(parts[3])") else { return refuse(404, "Repository not found") }
        guard isCommit(parts[5]) else { return refuse(404, "Commit not found: \(parts[5])") }
        guard let key = json["key"] as? String, !key.isEmpty else { return refuse(400, "key: This field is required.") }
        guard key.count <= 40 else { return refuse(400, "key: Ensure this value has at most 40 characters") }
        guard let word = json["state"] as? String, ["INPROGRESS", "SUCCESSFUL", "FAILED", "STOPPED"].contains(word) else {
            return refuse(400, "state: not a valid choice")
        }
        guard let url = json["url"] as? String, !url.isEmpty else { return refuse(400, "url: This field is required.") }
        return accept(
            Status(
                repository: "\(parts[2])/\(parts[3])", sha: parts[5], state: word, context: json["name"] as? String ?? key,
                description: json["description"] as? String ?? "", targetURL: url, branch: json["refname"] as? String,
                receivedAt: .now))
    }

    private func bitbucketServer(_ path: String, _ json: [String: Any]) -> Response {
        let parts = segments(path)
        guard parts.count == 10, parts[0] == "rest", parts[1] == "api", parts[2] == "latest", parts[3] == "projects",
            parts[5] == "repos", parts[7] == "commits", parts[9] == "builds"
        else { return refuse(404, "No such resource") }
        guard repositories.contains("\(parts[4])/\(parts[6])") else { return refuse(404, "Repository does not exist") }
        guard isCommit(parts[8]) else { return refuse(404, "Commit does not exist") }
        guard let key = json["key"] as? String, !key.isEmpty, key.count <= 255 else { return refuse(400, "key is required, at most 255 characters") }
        guard let word = json["state"] as? String, ["SUCCESSFUL", "FAILED", "INPROGRESS", "CANCELLED", "UNKNOWN"].contains(word) else {
            return refuse(400, "state is not valid")
        }
        guard let url = json["url"] as? String, !url.isEmpty, url.count <= 450 else { return refuse(400, "url is required, at most 450 characters") }
        guard (json["name"] as? String ?? "").count <= 255, (json["description"] as? String ?? "").count <= 255 else {
            return refuse(400, "name and description are at most 255 characters")
        }
        return accept(
            Status(
                repository: "\(parts[4])/\(parts[6])", sha: parts[8], state: word, context: key,
                description: json["description"] as? String ?? "", targetURL: url, branch: json["ref"] as? String,
                receivedAt: .now),
            code: 204, body: "")
    }

    private func gitea(_ path: String, _ json: [String: Any]) -> Response {
        let parts = segments(path)
        guard parts.count == 7, parts[0] == "api", parts[1] == "v1", parts[2] == "repos", parts[5] == "statuses" else {
            return refuse(404, "The target couldn't be found.")
        }
        guard repositories.contains("\(parts[3])/\(parts[4])") else { return refuse(404, "The target couldn't be found.") }
        guard isCommit(parts[6]) else { return refuse(422, "sha is not a commit") }
        guard let word = json["state"] as? String, ["pending", "success", "error", "failure", "warning"].contains(word) else {
            return refuse(422, "state is not valid")
        }
        return accept(
            Status(
                repository: "\(parts[3])/\(parts[4])", sha: parts[6], state: word, context: json["context"] as? String ?? "default",
                description: json["description"] as? String ?? "", targetURL: json["target_url"] as? String ?? "", receivedAt: .now))
    }
}
