import AsyncHTTPClient
import Foundation
import KilnCore
import KilnPipeline

/// Gitea and Forgejo: their own bare-hex signature headers (never the GitHub ones they also
/// send) and the commit status API.
public struct GiteaForge: Forge {
    /// What the adapter needs from the configuration.
    public struct Settings: Sendable {
        /// The instance, `https://codeberg.org`; the API is under `/api/v1`.
        public var url: String
        /// Webhook secrets; any of them verifies.
        public var webhookSecrets: [Secret]
        /// An access token with `write:repository`, sent as `token`.
        public var token: Secret?

        /// Creates settings.
        public init(url: String, webhookSecrets: [Secret], token: Secret?) {
            self.url = url.hasSuffix("/") ? String(url.dropLast()) : url
            self.webhookSecrets = webhookSecrets
            self.token = token
        }
    }

    private let settings: Settings
    private let api: ForgeHTTP

    /// Creates the adapter.
    public init(settings: Settings, client: HTTPClient = .shared) {
        self.settings = settings
        self.api = ForgeHTTP(client: client)
    }

    public func receive(_ delivery: WebhookDelivery) throws(WebhookError) -> WebhookOutcome {
        // Forgejo sends both its own and Gitea's headers; either is bare lowercase hex.
        let header = delivery.header("X-Forgejo-Signature") != nil ? "X-Forgejo-Signature" : "X-Gitea-Signature"
        guard let signature = delivery.header(header) else { throw .missingSignature(header: header) }
        // An empty signature means the webhook has no secret: that is a failure, not a pass.
        guard !signature.isEmpty, HMACSignature.verify(hex: signature[...], body: delivery.body, secrets: settings.webhookSecrets)
        else { throw .badSignature(header: header) }
        guard let event = delivery.header("X-Forgejo-Event") ?? delivery.header("X-Gitea-Event"), !event.isEmpty else {
            throw .malformed("missing X-Gitea-Event header")
        }
        let id = try Checked.delivery(
            delivery.header("X-Forgejo-Delivery") ?? delivery.header("X-Gitea-Delivery"), "X-Gitea-Delivery")
        switch event {
        case "push": return try Self.push(delivery.body, id)
        case "pull_request": return try Self.pullRequest(delivery.body, id)
        case "delete": return .ignored(reason: "a branch or tag was deleted; nothing to build")
        default: return .ignored(reason: "'\(event)' events do not start builds")
        }
    }

    private struct Repository: Decodable {
        var id: Int?
        var full_name: String
    }

    private struct Push: Decodable {
        var ref: String
        var before: String?
        var after: String
        var repository: Repository
    }

    static func push(_ body: [UInt8], _ id: String) throws(WebhookError) -> WebhookOutcome {
        let payload = try JSONErrors.decode(Push.self, body, what: "Gitea push payload")
        guard let ref = GitRef(fullName: payload.ref) else {
            return .ignored(reason: "push to \(payload.ref), which is neither a branch nor a tag")
        }
        // Gitea's "Test delivery" sends a push whose commits are all zeros.
        if CommitID.isZero(payload.after) {
            return .ignored(reason: "test delivery or deletion of \(ref); nothing to build")
        }
        return .trigger(
            PushEvent(
                deliveryID: id, repository: payload.repository.full_name, ref: ref,
                sha: try Checked.commit(payload.after, "after"), before: Checked.before(payload.before)))
    }

    private struct PullRequestPayload: Decodable {
        struct PullRequest: Decodable {
            struct End: Decodable {
                var ref: String
                var sha: String
                var repo_id: Int?
                var repo: Repository?
            }
            var head: End
            var base: End
            var merged: Bool?
        }
        var action: String
        var number: Int
        var pull_request: PullRequest
        var repository: Repository
    }

    static func pullRequest(_ body: [UInt8], _ id: String) throws(WebhookError) -> WebhookOutcome {
        let payload = try JSONErrors.decode(PullRequestPayload.self, body, what: "Gitea pull request payload")
        let number = try Checked.number(payload.number, "number")
        let action: PullRequestEvent.Action
        switch payload.action {
        case "opened": action = .opened
        case "synchronized": action = .updated
        case "reopened": action = .reopened
        case "closed":
            return .events([
                .pullRequestClosed(
                    PullRequestClosedEvent(
                        repository: payload.repository.full_name, number: number, merged: payload.pull_request.merged == true))
            ])
        default:
            return .ignored(reason: "pull request action '\(payload.action)' does not start builds")
        }
        let head = payload.pull_request.head
        let base = payload.pull_request.base
        let headRepository = head.repo_id ?? head.repo?.id
        let baseRepository = base.repo_id ?? base.repo?.id
        let isFork = headRepository != nil && baseRepository != nil && headRepository != baseRepository
        return .events([
            .pullRequest(
                PullRequestEvent(
                    deliveryID: id, repository: payload.repository.full_name, number: number, action: action,
                    headSHA: try Checked.commit(head.sha, "pull_request.head.sha"), headBranch: head.ref, baseBranch: base.ref,
                    isFork: isFork, headRepository: isFork ? head.repo?.full_name : nil))
        ])
    }

    public func post(_ status: CommitStatus, on commit: CommitRef) async throws(ForgeAPIError) {
        guard let token = settings.token else {
            throw .rejected(status: 0, body: "no token-file is configured for this Gitea forge")
        }
        guard let (owner, name) = ForgeHTTP.ownerAndName(commit.repository) else {
            throw .rejected(status: 0, body: "repository '\(commit.repository)' is not owner/name")
        }
        try await api.send(
            .POST, "\(settings.url)/api/v1/repos/\(owner)/\(name)/statuses/\(ForgeHTTP.segment(commit.sha))",
            headers: [("Authorization", "token \(token.value)")],
            json: [
                "state": Self.state(status.state), "context": status.context, "target_url": status.targetURL,
                "description": ForgeHTTP.truncate(status.description, to: 255),
            ])
    }

    /// Gitea's word for each of Kiln's states (DESIGN.md §6).
    static func state(_ state: StatusState) -> String {
        switch state {
        case .pending: return "pending"
        case .succeeded, .skipped: return "success"
        case .failed: return "failure"
        case .cancelled, .errored: return "error"
        }
    }
}
