import AsyncHTTPClient
import Crypto
import Foundation
import KilnCore
import KilnPipeline
import NIOHTTP1

/// GitLab (gitlab.com and self-managed): `X-Gitlab-Token` webhooks, optionally signed with a
/// signing token, and the commit status API.
public struct GitLabForge: Forge {
    /// What the adapter needs from the configuration.
    public struct Settings: Sendable {
        /// The instance, `https://gitlab.com`; the API is under `/api/v4`.
        public var url: String
        /// Secret tokens GitLab sends verbatim in `X-Gitlab-Token`; any of them is accepted.
        public var webhookSecrets: [Secret]
        /// Signing tokens (`whsec_<base64>`); when given, every delivery must carry a valid `webhook-signature`.
        public var signingTokens: [Secret]
        /// API token.
        public var token: Secret?
        /// Send the token as `Authorization: Bearer` (OAuth) instead of `PRIVATE-TOKEN`.
        public var bearerToken: Bool
        /// How far a signed delivery's timestamp may be from its arrival.
        public var maxSkew: Duration

        /// Creates settings.
        public init(
            url: String, webhookSecrets: [Secret], signingTokens: [Secret] = [], token: Secret?, bearerToken: Bool = false,
            maxSkew: Duration = .seconds(300)
        ) {
            self.url = url.hasSuffix("/") ? String(url.dropLast()) : url
            self.webhookSecrets = webhookSecrets
            self.signingTokens = signingTokens
            self.token = token
            self.bearerToken = bearerToken
            self.maxSkew = maxSkew
        }
    }

    let settings: Settings
    private let signingKeys: [SymmetricKey]
    let api: ForgeHTTP

    /// Creates the adapter.
    public init(settings: Settings, client: HTTPClient = .shared) {
        self.settings = settings
        self.signingKeys = settings.signingTokens.compactMap(Self.signingKey)
        self.api = ForgeHTTP(client: client)
    }

    /// Whether `token` is a signing token (`whsec_<base64>`).
    public static func isSigningToken(_ token: Secret) -> Bool { signingKey(token) != nil }

    /// The HMAC key of a `whsec_<base64>` signing token.
    static func signingKey(_ token: Secret) -> SymmetricKey? {
        let text = token.value.hasPrefix("whsec_") ? String(token.value.dropFirst(6)) : token.value
        return Data(base64Encoded: text).map { SymmetricKey(data: $0) }
    }

    public func receive(_ delivery: WebhookDelivery) throws(WebhookError) -> WebhookOutcome {
        // With nothing to check against, nothing is accepted.
        if settings.webhookSecrets.isEmpty, signingKeys.isEmpty { throw .missingSignature(header: "X-Gitlab-Token") }
        if !settings.webhookSecrets.isEmpty {
            guard let token = delivery.header("X-Gitlab-Token") else { throw .missingSignature(header: "X-Gitlab-Token") }
            var matched = false
            for secret in settings.webhookSecrets where ConstantTime.equals(Array(token.utf8), secret.bytes) {
                matched = true
            }
            guard matched else { throw .badSignature(header: "X-Gitlab-Token") }
        }
        if !signingKeys.isEmpty { try verifySigned(delivery) }
        // Signed, the id is the signed `webhook-id`: an unsigned header could be changed to get
        // one signed delivery accepted twice.
        let id = try signingKeys.isEmpty
            ? Checked.delivery(
                delivery.header("Idempotency-Key") ?? delivery.header("X-Gitlab-Event-UUID")
                    ?? delivery.header("X-Gitlab-Webhook-UUID"), "X-Gitlab-Event-UUID")
            : Checked.delivery(delivery.header("webhook-id"), "webhook-id")
        let kind = try JSONErrors.decode(Kind.self, delivery.body, what: "GitLab payload").object_kind
        switch kind {
        case "push", "tag_push": return try Self.push(delivery.body, id)
        case "merge_request": return try Self.mergeRequest(delivery.body, id)
        default: return .ignored(reason: "'\(kind)' events do not start builds")
        }
    }

    /// GitLab's signing token (Standard Webhooks): `webhook-signature: v1,<base64 HMAC-SHA256
    /// of "id.timestamp.body">`, any of several space-separated entries, with a fresh timestamp.
    private func verifySigned(_ delivery: WebhookDelivery) throws(WebhookError) {
        let header = "webhook-signature"
        guard let signatures = delivery.header(header) else { throw .missingSignature(header: header) }
        guard let id = delivery.header("webhook-id"), let stamp = delivery.header("webhook-timestamp"),
            let seconds = TimeInterval(stamp)
        else { throw .badSignature(header: header) }
        let skew = Double(settings.maxSkew.components.seconds)
        guard abs(delivery.receivedAt.timeIntervalSince1970 - seconds) <= skew else { throw .badSignature(header: header) }
        let signed = Array("\(id).\(stamp).".utf8) + delivery.body
        var valid = false
        for entry in signatures.split(separator: " ") where entry.hasPrefix("v1,") {
            guard let mac = Data(base64Encoded: String(entry.dropFirst(3))) else { continue }
            for key in signingKeys where HMAC<SHA256>.isValidAuthenticationCode(mac, authenticating: signed, using: key) {
                valid = true
            }
        }
        guard valid else { throw .badSignature(header: header) }
    }

    private struct Kind: Decodable {
        var object_kind: String
    }

    private struct Project: Decodable {
        var path_with_namespace: String
    }

    private struct Push: Decodable {
        var ref: String
        var before: String?
        var after: String
        var checkout_sha: String?
        var project: Project
    }

    static func push(_ body: [UInt8], _ id: String) throws(WebhookError) -> WebhookOutcome {
        let payload = try JSONErrors.decode(Push.self, body, what: "GitLab push payload")
        guard let ref = GitRef(fullName: payload.ref) else {
            return .ignored(reason: "push to \(payload.ref), which is neither a branch nor a tag")
        }
        guard let sha = payload.checkout_sha, !CommitID.isZero(payload.after) else {
            return .ignored(reason: "push deleted \(ref); nothing to build")
        }
        return .trigger(
            PushEvent(
                deliveryID: id, repository: payload.project.path_with_namespace, ref: ref,
                sha: try Checked.commit(sha, "checkout_sha"), before: Checked.before(payload.before)))
    }

    private struct MergeRequest: Decodable {
        struct Attributes: Decodable {
            struct Commit: Decodable {
                var id: String
            }
            var action: String?
            var iid: Int
            var oldrev: String?
            var last_commit: Commit
            var source_branch: String
            var target_branch: String
            var source_project_id: Int
            var target_project_id: Int
            var source: Project?
        }
        var object_attributes: Attributes
        var project: Project
    }

    static func mergeRequest(_ body: [UInt8], _ id: String) throws(WebhookError) -> WebhookOutcome {
        let payload = try JSONErrors.decode(MergeRequest.self, body, what: "GitLab merge request payload")
        let mr = payload.object_attributes
        let number = try Checked.number(mr.iid, "object_attributes.iid")
        let action: PullRequestEvent.Action
        switch mr.action ?? "" {
        case "open": action = .opened
        case "reopen": action = .reopened
        case "update" where mr.oldrev != nil: action = .updated
        case "update": return .ignored(reason: "merge request !\(number) was edited; its commits did not change")
        case "close", "merge":
            return .events([
                .pullRequestClosed(
                    PullRequestClosedEvent(
                        repository: payload.project.path_with_namespace, number: number, merged: mr.action == "merge"))
            ])
        case let other: return .ignored(reason: "merge request action '\(other)' does not start builds")
        }
        let isFork = mr.source_project_id != mr.target_project_id
        return .events([
            .pullRequest(
                PullRequestEvent(
                    deliveryID: id, repository: payload.project.path_with_namespace, number: number, action: action,
                    headSHA: try Checked.commit(mr.last_commit.id, "object_attributes.last_commit.id"),
                    headBranch: mr.source_branch, baseBranch: mr.target_branch, isFork: isFork,
                    headRepository: isFork ? mr.source?.path_with_namespace : nil))
        ])
    }

    public func checkAccess(to repository: String) async throws(ForgeAPIError) {
        guard let token = settings.token else { throw .rejected(status: 0, body: "no token-file is configured for this GitLab forge") }
        let auth = settings.bearerToken ? ("Authorization", "Bearer \(token.value)") : ("PRIVATE-TOKEN", token.value)
        try await api.send(.GET, "\(settings.url)/api/v4/projects/\(ForgeHTTP.segment(repository))", headers: [auth])
    }

    public func post(_ status: CommitStatus, on commit: CommitRef) async throws(ForgeAPIError) {
        guard let token = settings.token else {
            throw .rejected(status: 0, body: "no token-file is configured for this GitLab forge")
        }
        let project = ForgeHTTP.segment(commit.repository)
        var body: [String: String] = [
            "state": Self.state(status.state), "name": status.context, "target_url": status.targetURL,
            "description": ForgeHTTP.truncate(status.description, to: 255),
        ]
        if let branch = commit.branch { body["ref"] = branch }
        let auth = settings.bearerToken ? ("Authorization", "Bearer \(token.value)") : ("PRIVATE-TOKEN", token.value)
        do {
            try await api.send(
                .POST, "\(settings.url)/api/v4/projects/\(project)/statuses/\(ForgeHTTP.segment(commit.sha))",
                headers: [auth], json: body)
        } catch {
            // Posting the state a status already has is refused with 400; it is already there.
            if case .rejected(400, let answer) = error, answer.contains("Cannot transition status") { return }
            throw error
        }
    }

    /// GitLab's word for each of Kiln's states (DESIGN.md §6).
    static func state(_ state: StatusState) -> String {
        switch state {
        case .pending: return "pending"
        case .running: return "running"
        case .succeeded, .skipped: return "success"
        case .failed, .errored: return "failed"
        case .cancelled: return "canceled"
        }
    }
}
