import KilnCore
import KilnForges

/// A forge adapter with a known secret, and how that forge signs and labels a delivery.
public struct FixtureForge: Sendable {
    /// The webhook secret every adapter is configured with.
    public static let secret = "fixture-secret"

    /// The fixtures directory's name for the forge (`github`, …, `gitea`, `forgejo`).
    public let kind: String
    /// The adapter, with no API credentials.
    public let forge: any Forge
    /// The signature and delivery id headers for a body.
    private let sign: @Sendable ([UInt8], _ deliveryID: String) -> [(name: String, value: String)]

    /// The adapter for a fixtures directory.
    public static func make(_ kind: String) -> FixtureForge {
        let secrets = [Secret(secret)]
        let hub: @Sendable ([UInt8]) -> (name: String, value: String) = {
            ("X-Hub-Signature", "sha256=" + WebhookSigner.hex($0, secret: secret))
        }
        switch kind {
        case "github":
            return FixtureForge(
                kind: kind, forge: GitHubForge(settings: .init(apiURL: "http://127.0.0.1:1", webhookSecrets: secrets, token: nil)),
                sign: { [("X-Hub-Signature-256", WebhookSigner.github($0, secret: secret)), ("X-GitHub-Delivery", $1)] })
        case "gitlab":
            return FixtureForge(
                kind: kind, forge: GitLabForge(settings: .init(url: "http://127.0.0.1:1", webhookSecrets: secrets, token: nil)),
                sign: { [("X-Gitlab-Token", secret), ("X-Gitlab-Event-UUID", $1)] })
        case "bitbucket-cloud":
            return FixtureForge(
                kind: kind,
                forge: BitbucketCloudForge(settings: .init(apiURL: "http://127.0.0.1:1", webhookSecrets: secrets, token: nil)),
                sign: { [hub($0), ("X-Request-UUID", $1)] })
        case "bitbucket-server":
            return FixtureForge(
                kind: kind,
                forge: BitbucketServerForge(settings: .init(url: "http://127.0.0.1:1", webhookSecrets: secrets, token: nil)),
                sign: { [hub($0), ("X-Request-Id", $1)] })
        case "forgejo":
            return FixtureForge(
                kind: kind, forge: GiteaForge(settings: .init(url: "http://127.0.0.1:1", webhookSecrets: secrets, token: nil)),
                sign: { [("X-Forgejo-Signature", WebhookSigner.hex($0, secret: secret)), ("X-Forgejo-Delivery", $1)] })
        default:
            return FixtureForge(
                kind: kind, forge: GiteaForge(settings: .init(url: "http://127.0.0.1:1", webhookSecrets: secrets, token: nil)),
                sign: { [("X-Gitea-Signature", WebhookSigner.hex($0, secret: secret)), ("X-Gitea-Delivery", $1)] })
        }
    }

    /// The fixture's body with its recorded headers (event type), freshly signed, under a delivery id.
    public func delivery(_ fixture: String, event: String? = nil, id: String = "d") throws -> WebhookDelivery {
        let replaced = ["x-gitlab-token", "x-github-delivery", "x-gitlab-event-uuid", "x-request-uuid", "x-request-id", "x-gitea-delivery",
                        "x-forgejo-delivery", "webhook-id"]
        let recorded = try Fixtures.headers(fixture).filter {
            !$0.name.lowercased().contains("signature") && !replaced.contains($0.name.lowercased())
        }
        return delivery(try Fixtures.body(fixture), headers: recorded, event: event, id: id)
    }

    /// A body with the event header (when given) and other headers, freshly signed, under a delivery id.
    public func delivery(
        _ body: [UInt8], headers: [(name: String, value: String)] = [], event: String? = nil, id: String = "d"
    ) -> WebhookDelivery {
        let named = event.map { [(name: Self.eventHeader[kind]!, value: $0)] } ?? []
        return WebhookDelivery(headers: headers + named + sign(body, id), body: body)
    }

    /// The header that names the event, per fixtures directory.
    public static let eventHeader = [
        "github": "X-GitHub-Event", "gitlab": "X-Gitlab-Event", "bitbucket-cloud": "X-Event-Key",
        "bitbucket-server": "X-Event-Key", "gitea": "X-Gitea-Event", "forgejo": "X-Forgejo-Event",
    ]
}
