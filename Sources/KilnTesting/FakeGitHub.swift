import Foundation
import Hummingbird
import Logging
import ServiceLifecycle
import Synchronization

/// A stand-in for GitHub's commit status API on 127.0.0.1, as strict as the documentation:
/// it checks the bearer token, the path, the state words, the description's length and the
/// commit id, answers like GitHub, and records everything it received.
public final class FakeGitHub: Sendable {
    /// One status GitHub accepted.
    public struct Status: Sendable, Hashable {
        /// `owner/name` from the path.
        public var repository: String
        /// Commit from the path.
        public var sha: String
        /// `pending`, `success`, `failure` or `error`.
        public var state: String
        /// Status context.
        public var context: String
        /// Description.
        public var description: String
        /// Target URL.
        public var targetURL: String
        /// When the request arrived.
        public var receivedAt: ContinuousClock.Instant
    }

    private struct State {
        var accepted: [Status] = []
        var attempts = 0
        var refusals: [String] = []
        var scripted: [(status: Int, retryAfter: Int?)] = []
    }

    /// The token requests must carry (`Authorization: Bearer <token>`).
    public let token: String
    /// Repositories (`owner/name`) that exist.
    public let repositories: Set<String>
    private let state = Mutex(State())
    private let server: TestHTTPServer

    /// Starts the fake on a free port.
    public init(token: String, repositories: Set<String>) async throws {
        self.token = token
        self.repositories = repositories
        let router = Router()
        let box = Box()
        router.post("/repos/:owner/:repo/statuses/:sha") { request, context in
            try await box.fake!.handle(request, context)
        }
        server = try await TestHTTPServer.start(router: router)
        box.fake = self
    }

    /// The base URL to configure as `api-url`.
    public var url: String { "http://127.0.0.1:\(server.port)" }

    /// Statuses accepted so far, in order.
    public var statuses: [Status] { state.withLock { $0.accepted } }

    /// How many status requests arrived, accepted or not.
    public var attempts: Int { state.withLock { $0.attempts } }

    /// Why requests were refused (strictness violations), in order.
    public var refusals: [String] { state.withLock { $0.refusals } }

    /// Answers the next requests with these HTTP statuses (and optional `Retry-After` seconds) before behaving normally.
    public func failNext(_ answers: [(status: Int, retryAfter: Int?)]) {
        state.withLock { $0.scripted += answers }
    }

    /// Statuses accepted for one context, in order.
    public func states(_ context: String) -> [String] { statuses.filter { $0.context == context }.map(\.state) }

    /// Stops the server.
    public func stop() async { await server.stop() }

    private final class Box: @unchecked Sendable {
        var fake: FakeGitHub?
    }

    private func handle(_ request: Request, _ context: BasicRequestContext) async throws -> Response {
        var request = request
        let body = try await request.collectBody(upTo: 1 << 20)
        let scripted = state.withLock { state -> (Int, Int?)? in
            state.attempts += 1
            return state.scripted.isEmpty ? nil : state.scripted.removeFirst()
        }
        if let (code, retryAfter) = scripted {
            var headers: HTTPFields = [:]
            if let retryAfter { headers[.retryAfter] = String(retryAfter) }
            return Response(status: .init(code: code), headers: headers, body: .init(byteBuffer: ByteBuffer(string: "{\"message\":\"scripted failure\"}")))
        }
        func refuse(_ code: Int, _ message: String) -> Response {
            state.withLock { $0.refusals.append(message) }
            return Response(
                status: .init(code: code), body: .init(byteBuffer: ByteBuffer(string: "{\"message\":\"\(message)\"}")))
        }
        guard request.headers[.authorization] == "Bearer \(token)" else { return refuse(401, "Bad credentials") }
        guard request.headers[.userAgent] != nil else { return refuse(403, "Request forbidden: a User-Agent is required") }
        let owner = context.parameters.get("owner") ?? ""
        let repo = context.parameters.get("repo") ?? ""
        let sha = context.parameters.get("sha") ?? ""
        guard repositories.contains("\(owner)/\(repo)") else { return refuse(404, "Not Found") }
        guard sha.count == 40, sha.allSatisfy(\.isHexDigit) else { return refuse(422, "No commit found for SHA: \(sha)") }
        guard let json = try? JSONSerialization.jsonObject(with: Data(buffer: body)) as? [String: Any] else {
            return refuse(400, "Problems parsing JSON")
        }
        guard let stateWord = json["state"] as? String, ["error", "failure", "pending", "success"].contains(stateWord) else {
            return refuse(422, "Validation Failed: state is not included in the list")
        }
        let description = json["description"] as? String ?? ""
        guard description.count <= 140 else {
            return refuse(422, "Validation Failed: description is too long (maximum is 140 characters)")
        }
        let targetURL = json["target_url"] as? String ?? ""
        guard targetURL.isEmpty || URL(string: targetURL)?.scheme?.hasPrefix("http") == true else {
            return refuse(422, "Validation Failed: target_url is not a valid URL")
        }
        let status = Status(
            repository: "\(owner)/\(repo)", sha: sha, state: stateWord, context: json["context"] as? String ?? "default",
            description: description, targetURL: targetURL, receivedAt: .now)
        state.withLock { $0.accepted.append(status) }
        return Response(status: .created, body: .init(byteBuffer: ByteBuffer(string: "{\"id\":1}")))
    }
}
