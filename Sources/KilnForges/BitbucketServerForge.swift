import AsyncHTTPClient
import Foundation
import KilnCore
import KilnPipeline
import NIOHTTP1

/// Bitbucket Data Center (and Server): `X-Hub-Signature: sha256=` webhooks and the build status API.
public struct BitbucketServerForge: Forge {
    /// What the adapter needs from the configuration.
    public struct Settings: Sendable {
        /// The instance, `https://bitbucket.example.org`; the API is under `/rest`.
        public var url: String
        /// Webhook secrets; any of them verifies.
        public var webhookSecrets: [Secret]
        /// An HTTP access token, sent as `Bearer`.
        public var token: Secret?

        /// Creates settings.
        public init(url: String, webhookSecrets: [Secret], token: Secret?) {
            self.url = url.hasSuffix("/") ? String(url.dropLast()) : url
            self.webhookSecrets = webhookSecrets
            self.token = token
        }
    }

    let settings: Settings
    let api: ForgeHTTP

    /// Creates the adapter.
    public init(settings: Settings, client: HTTPClient = .shared) {
        self.settings = settings
        self.api = ForgeHTTP(client: client)
    }

    public var rawBodySecrets: [Secret] { settings.webhookSecrets }

    public func receive(_ delivery: WebhookDelivery) throws(WebhookError) -> WebhookOutcome {
        try HMACSignature.verifyPrefixed(delivery, header: "X-Hub-Signature", secrets: settings.webhookSecrets)
        guard let event = delivery.header("X-Event-Key"), !event.isEmpty else { throw .malformed("missing X-Event-Key header") }
        if event == "diagnostics:ping" { return .ignored(reason: "ping received; the webhook is set up") }
        let id = try Checked.delivery(delivery.header("X-Request-Id"), "X-Request-Id")
        switch event {
        case "repo:refs_changed": return try Self.refsChanged(delivery.body, id)
        case "pr:opened", "pr:from_ref_updated", "pr:merged", "pr:declined", "pr:deleted":
            return try Self.pullRequest(event, delivery.body, id)
        default: return .ignored(reason: "'\(event)' events do not start builds")
        }
    }

    private struct Repository: Decodable {
        struct Project: Decodable {
            var key: String
        }
        var id: Int?
        var slug: String
        var project: Project

        var fullName: String { "\(project.key)/\(slug)" }
    }

    private struct RefsChanged: Decodable {
        struct Change: Decodable {
            struct Ref: Decodable {
                var id: String
            }
            var ref: Ref
            var fromHash: String?
            var toHash: String
            var type: String
        }
        var repository: Repository
        var changes: [Change]
    }

    static func refsChanged(_ body: [UInt8], _ id: String) throws(WebhookError) -> WebhookOutcome {
        let payload = try JSONErrors.decode(RefsChanged.self, body, what: "Bitbucket refs_changed payload")
        var events: [ForgeEvent] = []
        for change in payload.changes where change.type != "DELETE" && !CommitID.isZero(change.toHash) {
            guard let ref = GitRef(fullName: change.ref.id) else { continue }
            events.append(
                .push(
                    PushEvent(
                        deliveryID: id, repository: payload.repository.fullName, ref: ref,
                        sha: try Checked.commit(change.toHash, "changes[].toHash"), before: Checked.before(change.fromHash))))
        }
        return events.isEmpty ? .ignored(reason: "push only deleted refs; nothing to build") : .events(events)
    }

    /// Dates in these payloads are epoch milliseconds or, from Data Center 10.3, ISO-8601
    /// strings; they are not read, so either decodes.
    private struct PullRequestPayload: Decodable {
        struct PullRequest: Decodable {
            struct End: Decodable {
                var displayId: String
                var latestCommit: String
                var repository: Repository
            }
            var id: Int
            var fromRef: End
            var toRef: End
        }
        var pullRequest: PullRequest
    }

    static func pullRequest(_ event: String, _ body: [UInt8], _ id: String) throws(WebhookError) -> WebhookOutcome {
        let payload = try JSONErrors.decode(PullRequestPayload.self, body, what: "Bitbucket pull request payload")
        let pull = payload.pullRequest
        let number = try Checked.number(pull.id, "pullRequest.id")
        let repository = pull.toRef.repository.fullName
        switch event {
        case "pr:merged", "pr:declined", "pr:deleted":
            return .events([
                .pullRequestClosed(PullRequestClosedEvent(repository: repository, number: number, merged: event == "pr:merged"))
            ])
        default:
            break
        }
        // A fork unless the source is known to be the target repository.
        let isFork = pull.fromRef.repository.id == nil || pull.fromRef.repository.id != pull.toRef.repository.id
        return .events([
            .pullRequest(
                PullRequestEvent(
                    deliveryID: id, repository: repository, number: number, action: event == "pr:opened" ? .opened : .updated,
                    headSHA: try Checked.commit(pull.fromRef.latestCommit, "pullRequest.fromRef.latestCommit"),
                    headBranch: pull.fromRef.displayId, baseBranch: pull.toRef.displayId, isFork: isFork,
                    headRepository: isFork ? pull.fromRef.repository.fullName : nil))
        ])
    }

    public func checkAccess(to repository: String) async throws(ForgeAPIError) {
        guard let token = settings.token else { throw .rejected(status: 0, body: "no token-file is configured for this Bitbucket Data Center forge") }
        guard let (owner, name) = ForgeHTTP.ownerAndName(repository) else {
            throw .rejected(status: 0, body: "repository '\(repository)' is not owner/name")
        }
        try await api.send(.GET, "\(settings.url)/rest/api/latest/projects/\(owner)/repos/\(name)", headers: [("Authorization", "Bearer \(token.value)")])
    }

    public func post(_ status: CommitStatus, on commit: CommitRef) async throws(ForgeAPIError) {
        guard let token = settings.token else {
            throw .rejected(status: 0, body: "no token-file is configured for this Bitbucket Data Center forge")
        }
        guard let (project, slug) = ForgeHTTP.ownerAndName(commit.repository) else {
            throw .rejected(status: 0, body: "repository '\(commit.repository)' is not PROJECT/slug")
        }
        var body: [String: String] = [
            "key": ForgeHTTP.truncate(status.context, to: 255), "state": Self.state(status.state),
            "url": ForgeHTTP.truncate(status.targetURL, to: 450), "name": ForgeHTTP.truncate(status.context, to: 255),
            "description": ForgeHTTP.truncate(status.description, to: 255),
        ]
        if let branch = commit.branch { body["ref"] = "refs/heads/\(branch)" }
        try await api.send(
            .POST,
            "\(settings.url)/rest/api/latest/projects/\(project)/repos/\(slug)/commits/\(ForgeHTTP.segment(commit.sha))/builds",
            headers: [("Authorization", "Bearer \(token.value)")], json: body)
    }

    /// Bitbucket Data Center's word for each of Kiln's states (DESIGN.md §6).
    static func state(_ state: StatusState) -> String {
        switch state {
        case .pending, .running: return "INPROGRESS"
        case .succeeded, .skipped: return "SUCCESSFUL"
        case .failed, .errored: return "FAILED"
        case .cancelled: return "CANCELLED"
        }
    }
}
