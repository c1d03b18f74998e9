import AsyncHTTPClient
import Foundation
import KilnCore
import KilnPipeline
import NIOHTTP1

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

    let settings: Settings
    let api: ForgeHTTP

    /// Creates the adapter.
    public init(settings: Settings, client: HTTPClient = .shared) {
        self.settings = settings
        self.api = ForgeHTTP(client: client)
    }

    public var rawBodySecrets: [Secret] { settings.webhookSecrets }

    public func receive(_ delivery: WebhookDelivery) throws(WebhookError) -> WebhookOutcome {
        // Forgejo sends both its own and Gitea's headers; either is bare lowercase hex.
        let header = delivery.header("X-Forgejo-Signature") != nil ? "X-Forgejo-Signature" : "X-Gitea-Signature"
        guard let signature = delivery.header(header) else { throw .missingSignature(header: header) }
        // An empty signature means the webhook has no secret: that is a failure, not a pass.
        guard !signature.isEmpty, HMACSignature.verify(hex: signature[...], delivery, secrets: settings.webhookSecrets)
        else { throw .badSignature(header: header) }
        guard let event = delivery.header("X-Forgejo-Event") ?? delivery.header("X-Gitea-Event"), !event.isEmpty else {
            throw .malformed("missing X-Gitea-Event header")
        }
        let id = try Checked.delivery(
            delivery.header("X-Forgejo-Delivery") ?? delivery.header("X-Gitea-Delivery"), "X-Gitea-Delivery")
        switch event {
        case "push": return try Self.push(delivery.body, id)
        case "pull_request":
            return try GitHubForge.pullRequest(
                delivery.body, id, what: "Gitea pull request payload", updatedAction: "synchronized")
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

    public func checkAccess(to repository: String) async throws(ForgeAPIError) {
        guard let token = settings.token else { throw .rejected(status: 0, body: "no token-file is configured for this Gitea forge") }
        guard let (owner, name) = ForgeHTTP.ownerAndName(repository) else {
            throw .rejected(status: 0, body: "repository '\(repository)' is not owner/name")
        }
        try await api.send(.GET, "\(settings.url)/api/v1/repos/\(owner)/\(name)", headers: [("Authorization", "token \(token.value)")])
    }

    /// Gitea's word for each of Kiln's states (DESIGN.md §6).
    static func state(_ state: StatusState) -> String {
        switch state {
        case .pending, .running: return "pending"
        case .succeeded, .skipped: return "success"
        case .failed: return "failure"
        case .cancelled, .errored: return "error"
        }
    }
}
