import AsyncHTTPClient
import Foundation
import KilnCore
import KilnPipeline
import NIOHTTP1

/// GitHub (github.com and Enterprise Server): `X-Hub-Signature-256` webhooks; commit statuses
/// or, with a GitHub App, check runs.
public struct GitHubForge: Forge {
    /// How Kiln authenticates to the API.
    public enum Credentials: Sendable {
        /// A personal (or fine-grained) access token.
        case token(Secret)
        /// A GitHub App's installation tokens.
        case app(GitHubApp)
        /// None: statuses are only recorded.
        case none
    }

    /// What the adapter needs from the configuration.
    public struct Settings: Sendable {
        /// `https://api.github.com`, or `https://HOST/api/v3` for Enterprise Server.
        public var apiURL: String
        /// Webhook secrets; any of them verifies (rotation).
        public var webhookSecrets: [Secret]
        /// API credentials.
        public var credentials: Credentials
        /// Report through check runs (GitHub App only) rather than commit statuses.
        public var checkRuns: Bool

        /// Creates settings.
        public init(apiURL: String, webhookSecrets: [Secret], credentials: Credentials, checkRuns: Bool = false) {
            self.apiURL = apiURL.hasSuffix("/") ? String(apiURL.dropLast()) : apiURL
            self.webhookSecrets = webhookSecrets
            self.credentials = credentials
            self.checkRuns = checkRuns
        }

        /// Settings with a token (or none), posting commit statuses.
        public init(apiURL: String, webhookSecrets: [Secret], token: Secret?) {
            self.init(apiURL: apiURL, webhookSecrets: webhookSecrets, credentials: token.map(Credentials.token) ?? .none)
        }
    }

    /// GitHub rejects longer status descriptions with a 422.
    static let descriptionLimit = 140
    /// Check run action identifiers.
    static let rerunAction = "rerun"
    static let approveAction = "approve"

    let settings: Settings
    let api: ForgeHTTP

    /// Creates the adapter.
    public init(settings: Settings, client: HTTPClient = .shared) {
        self.settings = settings
        self.api = ForgeHTTP(client: client)
    }

    // MARK: Webhooks

    public var rawBodySecrets: [Secret] { settings.webhookSecrets }

    public func receive(_ delivery: WebhookDelivery) throws(WebhookError) -> WebhookOutcome {
        try HMACSignature.verifyPrefixed(delivery, header: "X-Hub-Signature-256", secrets: settings.webhookSecrets)
        guard let event = delivery.header("X-GitHub-Event"), !event.isEmpty else {
            throw .malformed("missing X-GitHub-Event header")
        }
        let id = try Checked.delivery(delivery.header("X-GitHub-Delivery"), "X-GitHub-Delivery")
        switch event {
        case "ping":
            return .ignored(reason: "ping received; the webhook is set up")
        case "push":
            return try Self.push(json: Self.jsonBody(delivery), deliveryID: id)
        case "pull_request":
            return try Self.pullRequest(Self.jsonBody(delivery), id)
        case "check_run", "check_suite":
            return try Self.checks(event, Self.jsonBody(delivery), id)
        default:
            return .ignored(reason: "'\(event)' events do not start builds")
        }
    }

    /// The JSON of a delivery, also when the webhook was set up with the form content type.
    static func jsonBody(_ delivery: WebhookDelivery) throws(WebhookError) -> [UInt8] {
        guard let type = delivery.header("Content-Type"), type.hasPrefix("application/x-www-form-urlencoded") else {
            return delivery.body
        }
        let form = String(decoding: delivery.body, as: UTF8.self)
        guard let payload = URLComponents(string: "?" + form)?.queryItems?.first(where: { $0.name == "payload" })?.value
        else { throw .malformed("form-encoded body has no 'payload' field") }
        return Array(payload.utf8)
    }

    private struct Repository: Decodable {
        var id: Int?
        var full_name: String
    }

    private struct PushPayload: Decodable {
        var ref: String
        var after: String
        var before: String?
        var deleted: Bool?
        var repository: Repository
    }

    static func push(json: [UInt8], deliveryID: String) throws(WebhookError) -> WebhookOutcome {
        let payload = try JSONErrors.decode(PushPayload.self, json, what: "push payload")
        guard let ref = GitRef(fullName: payload.ref) else {
            return .ignored(reason: "push to \(payload.ref), which is neither a branch nor a tag")
        }
        if payload.deleted == true || CommitID.isZero(payload.after) {
            return .ignored(reason: "push deleted \(ref); nothing to build")
        }
        return .trigger(
            PushEvent(
                deliveryID: deliveryID, repository: payload.repository.full_name, ref: ref,
                sha: try Checked.commit(payload.after, "push 'after'"), before: Checked.before(payload.before)))
    }

    private struct PullRequestPayload: Decodable {
        struct PullRequest: Decodable {
            struct End: Decodable {
                var ref: String
                var sha: String
                var repo_id: Int?
                var repo: Repository?
                /// The repository's id: Gitea and Forgejo may send `repo_id` alone.
                var repositoryID: Int? { repo_id ?? repo?.id }
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

    /// A `pull_request` event; Gitea and Forgejo send the same shape and call new commits `synchronized`.
    static func pullRequest(
        _ body: [UInt8], _ id: String, what: String = "pull request payload", updatedAction: String = "synchronize"
    ) throws(WebhookError) -> WebhookOutcome {
        let payload = try JSONErrors.decode(PullRequestPayload.self, body, what: what)
        let number = try Checked.number(payload.number, "number")
        let action: PullRequestEvent.Action
        switch payload.action {
        case "opened": action = .opened
        case updatedAction: action = .updated
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
        // A fork unless the head is known to live in the base repository (a deleted fork has no head repository).
        let isFork = head.repositoryID == nil || head.repositoryID != payload.pull_request.base.repositoryID
        return .events([
            .pullRequest(
                PullRequestEvent(
                    deliveryID: id, repository: payload.repository.full_name, number: number, action: action,
                    headSHA: try Checked.commit(head.sha, "pull_request.head.sha"), headBranch: head.ref,
                    baseBranch: payload.pull_request.base.ref, isFork: isFork, headRepository: head.repo?.full_name))
        ])
    }

    private struct ChecksPayload: Decodable {
        struct Run: Decodable {
            var head_sha: String
        }
        struct Action: Decodable {
            var identifier: String
        }
        struct Sender: Decodable {
            var login: String
        }
        var action: String
        var check_run: Run?
        var check_suite: Run?
        var requested_action: Action?
        var repository: Repository
        var sender: Sender?
    }

    /// Check run and check suite events: the "Re-run" button and Kiln's own actions.
    static func checks(_ event: String, _ body: [UInt8], _ id: String) throws(WebhookError) -> WebhookOutcome {
        let payload = try JSONErrors.decode(ChecksPayload.self, body, what: "\(event) payload")
        guard let sha = (payload.check_run ?? payload.check_suite)?.head_sha else {
            throw .malformed("\(event) payload has no head_sha")
        }
        let commit = try Checked.commit(sha, "head_sha")
        let rerun = ForgeEvent.rerun(RerunRequest(deliveryID: id, repository: payload.repository.full_name, sha: commit))
        switch (payload.action, payload.requested_action?.identifier) {
        case ("rerequested", _), ("requested_action", rerunAction):
            return .events([rerun])
        case ("requested_action", approveAction):
            let approver = payload.sender?.login ?? "a GitHub user"
            return .events([.approve(ApproveRequest(repository: payload.repository.full_name, sha: commit, approver: approver))])
        default:
            return .ignored(reason: "\(event) action '\(payload.action)' starts nothing")
        }
    }

    // MARK: Statuses and check runs

    public func post(_ status: CommitStatus, on commit: CommitRef) async throws(ForgeAPIError) {
        guard let (owner, name) = ForgeHTTP.ownerAndName(commit.repository) else {
            throw .rejected(status: 0, body: "repository '\(commit.repository)' is not owner/name")
        }
        let token = try await token(for: commit.repository)
        do {
            try await send(status, commit, owner, name, token)
        } catch {
            // An App's installation token may have been revoked early: get a new one, once.
            guard case .rejected(401, _) = error, case .app(let app) = settings.credentials else { throw error }
            app.forget(token, of: commit.repository)
            try await send(status, commit, owner, name, try await self.token(for: commit.repository))
        }
    }

    public func checkAccess(to repository: String) async throws(ForgeAPIError) {
        guard let (owner, name) = ForgeHTTP.ownerAndName(repository) else {
            throw .rejected(status: 0, body: "repository '\(repository)' is not owner/name")
        }
        // A GitHub App's token proves the App is installed on the repository too.
        let token = try await token(for: repository)
        try await api.send(
            .GET, "\(settings.apiURL)/repos/\(owner)/\(name)",
            headers: [("Authorization", "Bearer \(token.value)"), ("Accept", "application/vnd.github+json"), ("X-GitHub-Api-Version", "2022-11-28")])
    }

    private func send(
        _ status: CommitStatus, _ commit: CommitRef, _ owner: String, _ name: String, _ token: Secret
    ) async throws(ForgeAPIError) {
        let headers = [
            ("Authorization", "Bearer \(token.value)"), ("Accept", "application/vnd.github+json"),
            ("X-GitHub-Api-Version", "2022-11-28"),
        ]
        let repository = "\(settings.apiURL)/repos/\(owner)/\(name)"
        guard settings.checkRuns else {
            try await api.send(
                .POST, "\(repository)/statuses/\(ForgeHTTP.segment(commit.sha))", headers: headers,
                json: [
                    "state": Self.state(status.state), "context": status.context, "target_url": status.targetURL,
                    "description": ForgeHTTP.truncate(status.description, to: Self.descriptionLimit),
                ])
            return
        }
        let run = Self.checkRun(status, sha: commit.sha)
        let existing = try await api.send(
            .GET,
            "\(repository)/commits/\(ForgeHTTP.segment(commit.sha))/check-runs?check_name=\(ForgeHTTP.segment(status.context))",
            headers: headers)
        let runs = ((try? JSONSerialization.jsonObject(with: Data(existing))) as? [String: Any])?["check_runs"] as? [[String: Any]]
        if let id = (runs?.first?["id"] as? NSNumber)?.int64Value {
            try await api.send(.PATCH, "\(repository)/check-runs/\(id)", headers: headers, json: run)
        } else {
            try await api.send(.POST, "\(repository)/check-runs", headers: headers, json: run)
        }
    }

    func token(for repository: String) async throws(ForgeAPIError) -> Secret {
        switch settings.credentials {
        case .token(let token): return token
        case .app(let app): return try await app.accessToken(for: repository)
        case .none: throw .rejected(status: 0, body: "no token-file or GitHub App is configured for this GitHub forge")
        }
    }

    /// A check run for a status: queued while pending, then completed with a conclusion,
    /// the markdown account, and the action that fits (approve a fork's commit, or run again).
    static func checkRun(_ status: CommitStatus, sha: String) -> [String: Any] {
        var run: [String: Any] = [
            "name": status.context, "head_sha": sha, "details_url": status.targetURL, "external_id": status.context,
            "output": [
                "title": ForgeHTTP.truncate(status.description, to: 1000),
                "summary": ForgeHTTP.truncate(status.details ?? status.description, to: 65535),
            ],
        ]
        switch status.state {
        case .pending:
            run["status"] = "queued"
            if status.description.hasPrefix("awaiting approval") {
                run["actions"] = [["label": "Approve", "description": "Build this commit of the fork", "identifier": approveAction]]
            }
        case .running:
            run["status"] = "in_progress"
        default:
            run["status"] = "completed"
            run["conclusion"] = conclusion(status.state)
            run["actions"] = [["label": "Re-run", "description": "Build this commit again", "identifier": rerunAction]]
        }
        return run
    }

    /// GitHub's word for each of Kiln's states (DESIGN.md §6).
    static func state(_ state: StatusState) -> String {
        switch state {
        case .pending, .running: return "pending"
        case .succeeded, .skipped: return "success"
        case .failed: return "failure"
        case .cancelled, .errored: return "error"
        }
    }

    /// A check run's conclusion for a final state.
    static func conclusion(_ state: StatusState) -> String {
        switch state {
        case .succeeded: return "success"
        case .skipped: return "skipped"
        case .failed, .errored, .pending, .running: return "failure"
        case .cancelled: return "cancelled"
        }
    }
}
