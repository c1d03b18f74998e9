import AsyncHTTPClient
import Foundation
import KilnCore
import KilnPipeline
import NIOHTTP1

/// Bitbucket Cloud (bitbucket.org): `X-Hub-Signature: sha256=` webhooks and the build status API.
public struct BitbucketCloudForge: Forge {
    /// What the adapter needs from the configuration.
    public struct Settings: Sendable {
        /// `https://api.bitbucket.org`; the API is under `/2.0`.
        public var apiURL: String
        /// Webhook secrets; any of them verifies.
        public var webhookSecrets: [Secret]
        /// An access token (repository, project or workspace), sent as `Bearer`.
        public var token: Secret?

        /// Creates settings.
        public init(apiURL: String, webhookSecrets: [Secret], token: Secret?) {
            self.apiURL = apiURL.hasSuffix("/") ? String(apiURL.dropLast()) : apiURL
            self.webhookSecrets = webhookSecrets
            self.token = token
        }
    }

    /// Bitbucket refuses status keys longer than this.
    static let keyLimit = 40

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
        let id = try Checked.delivery(delivery.header("X-Request-UUID"), "X-Request-UUID")
        switch event {
        case "repo:push": return try Self.push(delivery.body, id)
        case "pullrequest:created", "pullrequest:updated", "pullrequest:fulfilled", "pullrequest:rejected":
            return try Self.pullRequest(event, delivery.body, id)
        default: return .ignored(reason: "'\(event)' events do not start builds")
        }
    }

    private struct Repository: Decodable {
        var full_name: String
        var uuid: String?
    }

    private struct Push: Decodable {
        struct Change: Decodable {
            struct End: Decodable {
                struct Target: Decodable {
                    var hash: String
                }
                var type: String
                var name: String
                var target: Target
            }
            var new: End?
            var old: End?
        }
        struct Changes: Decodable {
            var changes: [Change]
        }
        var push: Changes
        var repository: Repository
    }

    /// One push can move several refs: one event each; deletions are left out.
    static func push(_ body: [UInt8], _ id: String) throws(WebhookError) -> WebhookOutcome {
        let payload = try JSONErrors.decode(Push.self, body, what: "Bitbucket push payload")
        var events: [ForgeEvent] = []
        for change in payload.push.changes {
            guard let new = change.new else { continue }
            let ref: GitRef
            switch new.type {
            case "branch": ref = .branch(new.name)
            case "tag", "annotated_tag": ref = .tag(new.name)
            default: continue
            }
            events.append(
                .push(
                    PushEvent(
                        deliveryID: id, repository: payload.repository.full_name, ref: ref,
                        sha: try Checked.commit(new.target.hash, "push.changes[].new.target.hash"),
                        before: Checked.before(change.old?.target.hash))))
        }
        return events.isEmpty ? .ignored(reason: "push only deleted refs; nothing to build") : .events(events)
    }

    private struct PullRequestPayload: Decodable {
        struct PullRequest: Decodable {
            struct End: Decodable {
                struct Branch: Decodable {
                    var name: String
                }
                struct Commit: Decodable {
                    var hash: String
                }
                var branch: Branch
                var commit: Commit
                var repository: Repository
            }
            var id: Int
            var source: End
            var destination: End
        }
        var pullrequest: PullRequest
        var repository: Repository
    }

    static func pullRequest(_ event: String, _ body: [UInt8], _ id: String) throws(WebhookError) -> WebhookOutcome {
        let payload = try JSONErrors.decode(PullRequestPayload.self, body, what: "Bitbucket pull request payload")
        let pull = payload.pullrequest
        let number = try Checked.number(pull.id, "pullrequest.id")
        switch event {
        case "pullrequest:fulfilled", "pullrequest:rejected":
            return .events([
                .pullRequestClosed(
                    PullRequestClosedEvent(
                        repository: payload.repository.full_name, number: number, merged: event == "pullrequest:fulfilled"))
            ])
        default:
            break
        }
        // Bitbucket sends a 12-character prefix; the worker resolves it once it has fetched.
        guard CommitID.isPrefix(pull.source.commit.hash) else {
            throw .malformed("pullrequest.source.commit.hash is not a commit id: \(pull.source.commit.hash.prefix(80))")
        }
        // A fork unless the source is known to be the destination repository.
        let isFork = pull.source.repository.uuid == nil || pull.source.repository.uuid != pull.destination.repository.uuid
        return .events([
            .pullRequest(
                PullRequestEvent(
                    deliveryID: id, repository: payload.repository.full_name, number: number,
                    action: event == "pullrequest:created" ? .opened : .updated, headSHA: pull.source.commit.hash,
                    headBranch: pull.source.branch.name, baseBranch: pull.destination.branch.name, isFork: isFork,
                    headRepository: pull.source.repository.full_name))
        ])
    }

    public func checkAccess(to repository: String) async throws(ForgeAPIError) {
        guard let token = settings.token else { throw .rejected(status: 0, body: "no token-file is configured for this Bitbucket Cloud forge") }
        guard let (owner, name) = ForgeHTTP.ownerAndName(repository) else {
            throw .rejected(status: 0, body: "repository '\(repository)' is not owner/name")
        }
        try await api.send(.GET, "\(settings.apiURL)/2.0/repositories/\(owner)/\(name)", headers: [("Authorization", "Bearer \(token.value)")])
    }

    public func post(_ status: CommitStatus, on commit: CommitRef) async throws(ForgeAPIError) {
        guard let token = settings.token else {
            throw .rejected(status: 0, body: "no token-file is configured for this Bitbucket Cloud forge")
        }
        guard let (workspace, slug) = ForgeHTTP.ownerAndName(commit.repository) else {
            throw .rejected(status: 0, body: "repository '\(commit.repository)' is not workspace/slug")
        }
        var body: [String: String] = [
            "key": Self.key(status.context), "state": Self.state(status.state), "url": status.targetURL,
            "name": status.context, "description": ForgeHTTP.truncate(status.description, to: 255),
        ]
        if let branch = commit.branch { body["refname"] = branch }
        try await api.send(
            .POST,
            "\(settings.apiURL)/2.0/repositories/\(workspace)/\(slug)/commit/\(ForgeHTTP.segment(commit.sha))/statuses/build",
            headers: [("Authorization", "Bearer \(token.value)")], json: body)
    }

    /// A status key of at most 40 characters: the context, or its start and a hash of all of it.
    static func key(_ context: String) -> String {
        guard context.count > keyLimit else { return context }
        var hash: UInt32 = 0x811c_9dc5
        for byte in context.utf8 {
            hash ^= UInt32(byte)
            hash = hash &* 0x0100_0193
        }
        let suffix = String(format: "%08x", hash)
        return String(context.prefix(keyLimit - suffix.count - 1)) + "-" + suffix
    }

    /// Bitbucket's word for each of Kiln's states (DESIGN.md §6).
    static func state(_ state: StatusState) -> String {
        switch state {
        case .pending, .running: return "INPROGRESS"
        case .succeeded, .skipped: return "SUCCESSFUL"
        case .failed, .errored: return "FAILED"
        case .cancelled: return "STOPPED"
        }
    }
}
