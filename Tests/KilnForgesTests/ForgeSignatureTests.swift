import Crypto
import Foundation
import KilnCore
import KilnTesting
import Testing

@testable import KilnForges

@Suite struct ForgeSignatureTests {
    static let documentedSecret = "It's a Secret to Everybody"
    static let documentedBody = Array("Hello, World!".utf8)
    static let documentedSignature = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"

    func github(_ secrets: [String]) -> GitHubForge {
        GitHubForge(settings: .init(apiURL: "http://127.0.0.1:1", webhookSecrets: secrets.map(Secret.init), token: nil))
    }

    func ping(signature: String?, body: [UInt8] = documentedBody) -> WebhookDelivery {
        var headers: [(name: String, value: String)] = [("X-GitHub-Event", "ping"), ("X-GitHub-Delivery", "d-1")]
        if let signature { headers.append(("X-Hub-Signature-256", signature)) }
        return WebhookDelivery(headers: headers, body: body)
    }

    @Test func githubDocumentedVectorVerifies() throws {
        #expect(try github([Self.documentedSecret]).receive(ping(signature: Self.documentedSignature)) == .ignored(reason: "ping received; the webhook is set up"))
        #expect(WebhookSigner.github(Self.documentedBody, secret: Self.documentedSecret) == Self.documentedSignature)
    }

    @Test func aSecondConfiguredSecretVerifies() throws {
        #expect(try github(["old-secret", Self.documentedSecret]).receive(ping(signature: Self.documentedSignature)) == .ignored(reason: "ping received; the webhook is set up"))
    }

    static let badSignatures: [(String, String)] = [
        ("wrong", "sha256=" + String(repeating: "0", count: 64)),
        ("truncated", String(documentedSignature.dropLast(2))),
        ("other algorithm", "sha1=" + String(documentedSignature.dropFirst(7))),
        ("no prefix", String(documentedSignature.dropFirst(7))),
        ("upper-case hex", "sha256=" + documentedSignature.dropFirst(7).uppercased()),
        ("empty", ""),
        ("extra byte", documentedSignature + "00"),
    ]

    @Test(arguments: badSignatures)
    func githubBadSignatureIsRefused(label: String, signature: String) {
        #expect(throws: WebhookError.badSignature(header: "X-Hub-Signature-256")) {
            try github([Self.documentedSecret]).receive(ping(signature: signature))
        }
    }

    /// The edge MACs the body as it streams in (in chunks); the adapter compares with those.
    @Test func macsComputedWhileTheBodyStreamedAreWhatIsCompared() throws {
        let secret = Secret(Self.documentedSecret)
        var macs = BodyMACs(secrets: [Secret("other"), secret])
        for chunk in [Self.documentedBody.prefix(3), Self.documentedBody.dropFirst(3).prefix(4), Self.documentedBody.dropFirst(7)] {
            Array(chunk).withUnsafeBytes { macs.update($0) }
        }
        let streamed = macs.finalize()
        #expect(streamed[secret] == Array(HMAC<SHA256>.authenticationCode(for: Self.documentedBody, using: SymmetricKey(data: secret.bytes))))
        var delivery = ping(signature: Self.documentedSignature)
        delivery.bodyMACs = streamed
        #expect(try github([Self.documentedSecret]).receive(delivery) == .ignored(reason: "ping received; the webhook is set up"))
        // MACs of another body fail the delivery even though its own body and signature agree.
        var other = BodyMACs(secrets: [secret])
        Array("another body".utf8).withUnsafeBytes { other.update($0) }
        delivery.bodyMACs = other.finalize()
        #expect(throws: WebhookError.badSignature(header: "X-Hub-Signature-256")) { try github([Self.documentedSecret]).receive(delivery) }
    }

    @Test func githubMissingSignatureIsRefused() {
        #expect(throws: WebhookError.missingSignature(header: "X-Hub-Signature-256")) {
            try github([Self.documentedSecret]).receive(ping(signature: nil))
        }
    }

    /// The signature headers recorded with real payloads (SOURCES.md), with their sources' secrets.
    static let vectors: [(forge: String, fixture: String, secret: String, delivery: (String, String))] = [
        ("github", "github/push.json", "topsecret", ("X-GitHub-Delivery", "d")),
        ("bitbucket-server", "bitbucket-server/repo_refs_changed.branch-deleted.json", "secret", ("X-Request-Id", "d")),
        ("bitbucket-server", "bitbucket-server/pr_opened.json", "secret", ("X-Request-Id", "d")),
        ("gitea", "gitea/push.json", "IsWishesWereHorsesWedAllBeEatingSteak!", ("X-Gitea-Delivery", "d")),
        ("gitea", "gitea/pull_request.json", "IsWishesWereHorsesWedAllBeEatingSteak!", ("X-Gitea-Delivery", "d")),
        ("gitlab", "gitlab/push.json", "sampleToken!", ("X-Gitlab-Event-UUID", "d")),
        ("gitlab", "gitlab/tag_push.json", "sampleToken!", ("X-Gitlab-Event-UUID", "d")),
        ("gitlab", "gitlab/merge_request.json", "sampleToken!", ("X-Gitlab-Event-UUID", "d")),
    ]

    static func forge(_ kind: String, secret: String) -> any Forge {
        let secrets = [Secret(secret)]
        switch kind {
        case "github": return GitHubForge(settings: .init(apiURL: "http://127.0.0.1:1", webhookSecrets: secrets, token: nil))
        case "gitlab": return GitLabForge(settings: .init(url: "http://127.0.0.1:1", webhookSecrets: secrets, token: nil))
        case "bitbucket-server": return BitbucketServerForge(settings: .init(url: "http://127.0.0.1:1", webhookSecrets: secrets, token: nil))
        default: return GiteaForge(settings: .init(url: "http://127.0.0.1:1", webhookSecrets: secrets, token: nil))
        }
    }

    @Test(arguments: vectors)
    func recordedSignatureVerifies(forge: String, fixture: String, secret: String, delivery: (String, String)) throws {
        let body = try Fixtures.body(fixture)
        let headers = try Fixtures.headers(fixture) + [delivery]
        let outcome = try Self.forge(forge, secret: secret).receive(WebhookDelivery(headers: headers, body: body))
        guard case .events = outcome else {
            if case .ignored = outcome, fixture.contains("deleted") { return }
            Issue.record("\(fixture) should build, got \(outcome)")
            return
        }
    }

    @Test(arguments: vectors)
    func everyMutationFails(forge: String, fixture: String, secret: String, delivery: (String, String)) throws {
        let body = try Fixtures.body(fixture)
        let headers = try Fixtures.headers(fixture) + [delivery]
        // A changed body.
        var changed = body
        changed[changed.count / 2] ^= 0x01
        #expect(throws: WebhookError.self) { try Self.forge(forge, secret: secret).receive(WebhookDelivery(headers: headers, body: changed)) }
        // A changed secret.
        #expect(throws: WebhookError.self) { try Self.forge(forge, secret: secret + "x").receive(WebhookDelivery(headers: headers, body: body)) }
        // A changed signature header: one character flipped.
        let mutated = headers.map { header -> (name: String, value: String) in
            guard header.name.lowercased().contains("signature") || header.name == "X-Gitlab-Token" else { return header }
            var value = Array(header.value)
            let last = value.count - 1
            value[last] = value[last] == "0" ? "1" : "0"
            return (header.name, String(value))
        }
        #expect(throws: WebhookError.self) { try Self.forge(forge, secret: secret).receive(WebhookDelivery(headers: mutated, body: body)) }
        // No signature at all.
        let unsigned = headers.filter { !$0.name.lowercased().contains("signature") && $0.name != "X-Gitlab-Token" }
        #expect(throws: WebhookError.self) { try Self.forge(forge, secret: secret).receive(WebhookDelivery(headers: unsigned, body: body)) }
    }

    @Test func giteaEmptySignatureIsAFailureNotNoSecret() throws {
        let body = try Fixtures.body("gitea/push.json")
        let forge = Self.forge("gitea", secret: "IsWishesWereHorsesWedAllBeEatingSteak!")
        #expect(throws: WebhookError.badSignature(header: "X-Gitea-Signature")) {
            try forge.receive(WebhookDelivery(headers: [("X-Gitea-Event", "push"), ("X-Gitea-Signature", ""), ("X-Gitea-Delivery", "d")], body: body))
        }
    }

    @Test func giteaIgnoresTheGitHubHeadersItAlsoSends() throws {
        let body = try Fixtures.body("gitea/push.json")
        let secret = "IsWishesWereHorsesWedAllBeEatingSteak!"
        let headers: [(name: String, value: String)] = [
            ("X-Gitea-Event", "push"), ("X-Gitea-Delivery", "d"), ("X-Hub-Signature-256", WebhookSigner.github(body, secret: secret)),
        ]
        #expect(throws: WebhookError.missingSignature(header: "X-Gitea-Signature")) {
            try Self.forge("gitea", secret: secret).receive(WebhookDelivery(headers: headers, body: body))
        }
    }

    @Test func bitbucketCloudSignsWithSha256InXHubSignature() throws {
        let body = try Fixtures.body("bitbucket-cloud/repo_push.json")
        let forge = BitbucketCloudForge(settings: .init(apiURL: "http://127.0.0.1:1", webhookSecrets: [Secret("s")], token: nil))
        let good: [(name: String, value: String)] = [("X-Event-Key", "repo:push"), ("X-Request-UUID", "d"), ("X-Hub-Signature", "sha256=" + WebhookSigner.hex(body, secret: "s"))]
        guard case .events = try forge.receive(WebhookDelivery(headers: good, body: body)) else {
            Issue.record("expected events")
            return
        }
        // GitHub's legacy SHA-1 form in the same header is refused.
        let sha1 = Array(Insecure.SHA1.hash(data: body)).map { String(format: "%02x", $0) }.joined()
        let legacy: [(name: String, value: String)] = [("X-Event-Key", "repo:push"), ("X-Request-UUID", "d"), ("X-Hub-Signature", "sha1=" + sha1)]
        #expect(throws: WebhookError.badSignature(header: "X-Hub-Signature")) { try forge.receive(WebhookDelivery(headers: legacy, body: body)) }
    }
}

/// GitLab's signing token (Standard Webhooks): `v1,<base64 HMAC-SHA256 of id.timestamp.body>`.
@Suite struct GitLabSigningTokenTests {
    static let key = Array("a signing key of thirty-two bytes".utf8.prefix(32))
    static let token = Secret("whsec_" + Data(key).base64EncodedString())

    func forge(tokens: [Secret] = [token], secrets: [Secret] = []) -> GitLabForge {
        GitLabForge(settings: .init(url: "http://127.0.0.1:1", webhookSecrets: secrets, signingTokens: tokens, token: nil))
    }

    func signed(_ body: [UInt8], id: String = "msg-1", timestamp: Date, key: [UInt8] = key, extra: String = "") -> [(name: String, value: String)] {
        let stamp = String(Int(timestamp.timeIntervalSince1970))
        let mac = HMAC<SHA256>.authenticationCode(for: Array("\(id).\(stamp).".utf8) + body, using: SymmetricKey(data: key))
        return [
            ("webhook-id", id), ("webhook-timestamp", stamp),
            ("webhook-signature", (extra.isEmpty ? "" : extra + " ") + "v1," + Data(mac).base64EncodedString()),
            ("X-Gitlab-Event", "Push Hook"),
        ]
    }

    @Test func freshSignatureVerifies() throws {
        let body = try Fixtures.body("gitlab/push.json")
        let now = Date()
        let outcome = try forge().receive(WebhookDelivery(headers: signed(body, timestamp: now), body: body, receivedAt: now))
        #expect(describe(outcome).hasPrefix("push mike/diaspora"))
        // Several signatures (key rotation): one valid one is enough.
        let rotated = signed(body, timestamp: now, extra: "v1,bm90IHRoZSByaWdodCBvbmU=")
        #expect(describe(try forge().receive(WebhookDelivery(headers: rotated, body: body, receivedAt: now))).hasPrefix("push"))
    }

    @Test func staleTimestampFails() throws {
        let body = try Fixtures.body("gitlab/push.json")
        let now = Date()
        #expect(throws: WebhookError.badSignature(header: "webhook-signature")) {
            try forge().receive(WebhookDelivery(headers: signed(body, timestamp: now.addingTimeInterval(-600)), body: body, receivedAt: now))
        }
        #expect(throws: WebhookError.badSignature(header: "webhook-signature")) {
            try forge().receive(WebhookDelivery(headers: signed(body, timestamp: now.addingTimeInterval(600)), body: body, receivedAt: now))
        }
    }

    @Test func wrongKeyChangedIdOrMissingHeaderFails() throws {
        let body = try Fixtures.body("gitlab/push.json")
        let now = Date()
        let wrongKey = signed(body, timestamp: now, key: Array(repeating: 7, count: 32))
        #expect(throws: WebhookError.badSignature(header: "webhook-signature")) { try forge().receive(WebhookDelivery(headers: wrongKey, body: body, receivedAt: now)) }
        let changedID = signed(body, timestamp: now).map { $0.name == "webhook-id" ? ($0.name, "msg-2") : $0 }
        #expect(throws: WebhookError.badSignature(header: "webhook-signature")) { try forge().receive(WebhookDelivery(headers: changedID, body: body, receivedAt: now)) }
        let unsigned = signed(body, timestamp: now).filter { $0.name != "webhook-signature" }
        #expect(throws: WebhookError.missingSignature(header: "webhook-signature")) { try forge().receive(WebhookDelivery(headers: unsigned, body: body, receivedAt: now)) }
    }

    @Test func withNothingToCheckAgainstNothingIsAccepted() throws {
        let body = try Fixtures.body("gitlab/push.json")
        let forge = GitLabForge(settings: .init(url: "http://127.0.0.1:1", webhookSecrets: [], token: nil))
        #expect(throws: WebhookError.missingSignature(header: "X-Gitlab-Token")) {
            try forge.receive(WebhookDelivery(headers: [("X-Gitlab-Token", ""), ("X-Gitlab-Event-UUID", "d")], body: body))
        }
    }

    /// An empty or short X-Gitlab-Token never matches a long secret token (lengths 0…512).
    @Test(arguments: [0, 1, 255, 256, 257, 512], [1, 255, 256, 257, 512])
    func secretTokenOfAnotherLengthIsRefused(sent: Int, configured: Int) throws {
        let body = try Fixtures.body("gitlab/push.json")
        let forge = GitLabForge(settings: .init(
            url: "http://127.0.0.1:1", webhookSecrets: [Secret(String(repeating: "a", count: configured))], token: nil))
        let delivery = WebhookDelivery(
            headers: [("X-Gitlab-Token", String(repeating: "a", count: sent)), ("X-Gitlab-Event-UUID", "d")], body: body)
        if sent == configured {
            #expect(describe(try forge.receive(delivery)).hasPrefix("push"))
        } else {
            #expect(throws: WebhookError.badSignature(header: "X-Gitlab-Token")) { try forge.receive(delivery) }
        }
    }

    /// In signed mode the delivery id is the signed `webhook-id`, not an unsigned header that a
    /// replayer could change to get a signed delivery built twice.
    @Test func signedModeDedupesOnTheSignedID() throws {
        let body = try Fixtures.body("gitlab/push.json")
        let now = Date()
        let headers = signed(body, id: "msg-7", timestamp: now) + [("Idempotency-Key", "chosen-by-anyone"), ("X-Gitlab-Event-UUID", "other")]
        guard case .events(let events) = try forge().receive(WebhookDelivery(headers: headers, body: body, receivedAt: now)),
            case .push(let push)? = events.first
        else {
            Issue.record("expected a push")
            return
        }
        #expect(push.deliveryID == "msg-7")
    }

    @Test func secretTokenIsCheckedToo() throws {
        let body = try Fixtures.body("gitlab/push.json")
        let now = Date()
        let forge = forge(secrets: [Secret("plain")])
        #expect(throws: WebhookError.missingSignature(header: "X-Gitlab-Token")) {
            try forge.receive(WebhookDelivery(headers: signed(body, timestamp: now), body: body, receivedAt: now))
        }
        let both = signed(body, timestamp: now) + [("X-Gitlab-Token", "plain")]
        #expect(describe(try forge.receive(WebhookDelivery(headers: both, body: body, receivedAt: now))).hasPrefix("push"))
    }
}
