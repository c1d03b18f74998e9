import AsyncHTTPClient
import Foundation
import KilnCore
import KilnPipeline

/// GitHub (github.com and Enterprise Server): `X-Hub-Signature-256` webhooks and the
/// commit status API.
public struct GitHubForge: Forge {
    /// What the adapter needs from the configuration.
    public struct Settings: Sendable {
        /// `https://api.github.com`, or `https://HOST/api/v3` for Enterprise Server.
        public var apiURL: String
        /// Webhook secrets; any of them verifies (rotation).
        public var webhookSecrets: [Secret]
        /// Token for the status API; nil when statuses are only recorded.
        public var token: Secret?

        /// Creates settings.
        public init(apiURL: String, webhookSecrets: [Secret], token: Secret?) {
            self.apiURL = apiURL.hasSuffix("/") ? String(apiURL.dropLast()) : apiURL
            self.webhookSecrets = webhookSecrets
            self.token = token
        }
    }

    /// GitHub rejects longer descriptions with a 422.
    static let descriptionLimit = 140

    private let settings: Settings
    private let api: StatusAPIClient

    /// Creates the adapter.
    public init(settings: Settings, client: HTTPClient = .shared) {
        self.settings = settings
        self.api = StatusAPIClient(client: client)
    }

    public func receive(_ delivery: WebhookDelivery) throws(WebhookError) -> WebhookOutcome {
        let header = "X-Hub-Signature-256"
        guard let signature = delivery.header(header) else { throw .missingSignature(header: header) }
        guard signature.hasPrefix("sha256="),
            HMACSignature.verify(hex: signature.dropFirst(7), body: delivery.body, secrets: settings.webhookSecrets)
        else { throw .badSignature(header: header) }

        guard let event = delivery.header("X-GitHub-Event"), !event.isEmpty else {
            throw .malformed("missing X-GitHub-Event header")
        }
        guard let deliveryID = delivery.header("X-GitHub-Delivery"), !deliveryID.isEmpty, deliveryID.count <= 200 else {
            throw .malformed("missing or overlong X-GitHub-Delivery header")
        }
        switch event {
        case "ping":
            return .ignored(reason: "ping received; the webhook is set up")
        case "push":
            return try Self.push(json: Self.jsonBody(delivery), deliveryID: deliveryID)
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

    private struct PushPayload: Decodable {
        struct Repository: Decodable {
            var full_name: String
        }
        var ref: String
        var after: String
        var before: String?
        var deleted: Bool?
        var repository: Repository
    }

    static func push(json: [UInt8], deliveryID: String) throws(WebhookError) -> WebhookOutcome {
        let payload: PushPayload
        do {
            payload = try JSONDecoder().decode(PushPayload.self, from: Data(json))
        } catch {
            throw .malformed("push payload is not what GitHub documents: \(JSONErrors.describe(error))")
        }
        guard let ref = GitRef(fullName: payload.ref) else {
            return .ignored(reason: "push to \(payload.ref), which is neither a branch nor a tag")
        }
        if payload.deleted == true || CommitID.isZero(payload.after) {
            return .ignored(reason: "push deleted \(ref); nothing to build")
        }
        guard CommitID.isValid(payload.after) else {
            throw .malformed("push 'after' is not a commit id: \(payload.after.prefix(80))")
        }
        let before = payload.before.flatMap { CommitID.isValid($0) && !CommitID.isZero($0) ? $0 : nil }
        return .trigger(
            PushEvent(
                deliveryID: deliveryID, repository: payload.repository.full_name, ref: ref, sha: payload.after,
                before: before))
    }

    public func post(_ status: CommitStatus, on commit: CommitRef) async throws(ForgeAPIError) {
        guard let token = settings.token else {
            throw .rejected(status: 0, body: "no token-file is configured for this GitHub forge")
        }
        let parts = commit.repository.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2 else { throw .rejected(status: 0, body: "repository '\(commit.repository)' is not owner/name") }
        let url =
            "\(settings.apiURL)/repos/\(StatusAPIClient.segment(String(parts[0])))/\(StatusAPIClient.segment(String(parts[1])))/statuses/\(StatusAPIClient.segment(commit.sha))"
        try await api.post(
            url,
            headers: [
                ("Authorization", "Bearer \(token.value)"), ("Accept", "application/vnd.github+json"),
                ("X-GitHub-Api-Version", "2022-11-28"),
            ],
            json: [
                "state": Self.state(status.state), "context": status.context, "target_url": status.targetURL,
                "description": StatusAPIClient.truncate(status.description, to: Self.descriptionLimit),
            ])
    }

    /// GitHub's word for each of Kiln's states (DESIGN.md §6).
    static func state(_ state: StatusState) -> String {
        switch state {
        case .pending: return "pending"
        case .succeeded, .skipped: return "success"
        case .failed: return "failure"
        case .cancelled, .errored: return "error"
        }
    }
}

/// Decoding errors in a sentence.
enum JSONErrors {
    static func describe(_ error: any Error) -> String {
        switch error {
        case DecodingError.keyNotFound(let key, let context):
            return "missing field '\(path(context.codingPath + [key]))'"
        case DecodingError.typeMismatch(_, let context), DecodingError.valueNotFound(_, let context):
            return "field '\(path(context.codingPath))' has the wrong type"
        case DecodingError.dataCorrupted(let context):
            return context.codingPath.isEmpty ? "body is not valid JSON" : "field '\(path(context.codingPath))' is invalid"
        default:
            return "\(error)"
        }
    }

    private static func path(_ keys: [any CodingKey]) -> String {
        keys.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }.joined(separator: ".")
    }
}
