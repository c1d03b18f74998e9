import Foundation
import KilnCore
import KilnPipeline
import KilnTesting
import Testing

@testable import KilnForges

@Suite struct GitHubSignatureTests {
    static let documentedSecret = "It's a Secret to Everybody"
    static let documentedBody = Array("Hello, World!".utf8)
    static let documentedSignature = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"

    func forge(_ secrets: [String]) -> GitHubForge {
        GitHubForge(settings: .init(apiURL: "http://127.0.0.1:1", webhookSecrets: secrets.map(Secret.init), token: nil))
    }

    func delivery(signature: String?, body: [UInt8] = documentedBody, event: String = "ping") -> WebhookDelivery {
        var headers: [(name: String, value: String)] = [("X-GitHub-Event", event), ("X-GitHub-Delivery", "d-1")]
        if let signature { headers.append(("X-Hub-Signature-256", signature)) }
        return WebhookDelivery(headers: headers, body: body)
    }

    @Test func documentedVectorVerifies() throws {
        let outcome = try forge([Self.documentedSecret]).receive(delivery(signature: Self.documentedSignature))
        #expect(outcome == .ignored(reason: "ping received; the webhook is set up"))
        #expect(WebhookSigner.github(Self.documentedBody, secret: Self.documentedSecret) == Self.documentedSignature)
    }

    @Test func secondConfiguredSecretVerifies() throws {
        let outcome = try forge(["old-secret", Self.documentedSecret]).receive(delivery(signature: Self.documentedSignature))
        #expect(outcome == .ignored(reason: "ping received; the webhook is set up"))
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
    func badSignatureIsRefused(label: String, signature: String) {
        #expect(throws: WebhookError.badSignature(header: "X-Hub-Signature-256")) {
            try forge([Self.documentedSecret]).receive(delivery(signature: signature))
        }
    }

    @Test func missingSignatureIsRefused() {
        #expect(throws: WebhookError.missingSignature(header: "X-Hub-Signature-256")) {
            try forge([Self.documentedSecret]).receive(delivery(signature: nil))
        }
    }

    @Test func changedBodyOrSecretIsRefused() {
        var body = Self.documentedBody
        body[0] ^= 1
        #expect(throws: WebhookError.badSignature(header: "X-Hub-Signature-256")) {
            try forge([Self.documentedSecret]).receive(delivery(signature: Self.documentedSignature, body: body))
        }
        #expect(throws: WebhookError.badSignature(header: "X-Hub-Signature-256")) {
            try forge(["It's a secret to everybody"]).receive(delivery(signature: Self.documentedSignature))
        }
    }

    /// The signature recorded with the real push fixture, whose source signed it with `topsecret`.
    @Test func fixtureSignatureVerifies() throws {
        let body = try Fixtures.body("github/push.json")
        let headers = try Fixtures.headers("github/push.json")
        let outcome = try forge(["topsecret"]).receive(WebhookDelivery(headers: headers, body: body))
        #expect(
            outcome
                == .trigger(
                    PushEvent(
                        deliveryID: "ee8d97b4-1479-43f1-9cac-fbbd1b80da55", repository: "Codertocat/Hello-World",
                        ref: .branch("master"), sha: "199eddf46df50de8d02e99bf1c5fdb4101338224",
                        before: "a10867b14bb761a232cd80139fbd4c0d33264240")))
    }
}

@Suite struct GitHubPayloadTests {
    static let secret = "fixture-secret"

    /// Every GitHub fixture and what it must become.
    static let cases: [(fixture: String, event: String, expected: WebhookOutcome)] = [
        ("github/push.json", "push", .trigger(PushEvent(deliveryID: "d", repository: "Codertocat/Hello-World", ref: .branch("master"), sha: "199eddf46df50de8d02e99bf1c5fdb4101338224", before: "a10867b14bb761a232cd80139fbd4c0d33264240"))),
        ("github/push.branch-created.json", "push", .trigger(PushEvent(deliveryID: "d", repository: "Codertocat/Hello-World", ref: .branch("master"), sha: "6113728f27ae82c7b1a177c8d03f9e96e0adf246"))),
        ("github/push.tag-created.json", "push", .trigger(PushEvent(deliveryID: "d", repository: "bradrydzewski/drone-test-go", ref: .tag("v0.0.1"), sha: "d2b75aa7797ec26b088fa2dd527e9d2c052fcedd"))),
        ("github/push.branch-deleted.json", "push", .ignored(reason: "push deleted branch 'feature-branch'; nothing to build")),
        ("github/push.tag-deleted.json", "push", .ignored(reason: "push deleted tag 'simple-tag'; nothing to build")),
        ("github/ping.json", "ping", .ignored(reason: "ping received; the webhook is set up")),
        ("github/ping.app.json", "ping", .ignored(reason: "ping received; the webhook is set up")),
        ("github/pull_request.opened.json", "pull_request", .ignored(reason: "'pull_request' events do not start builds")),
        ("github/pull_request.synchronize.json", "pull_request", .ignored(reason: "'pull_request' events do not start builds")),
        ("github/pull_request.reopened.json", "pull_request", .ignored(reason: "'pull_request' events do not start builds")),
        ("github/pull_request.closed.json", "pull_request", .ignored(reason: "'pull_request' events do not start builds")),
    ]

    @Test(arguments: cases)
    func fixtureDecodes(fixture: String, event: String, expected: WebhookOutcome) throws {
        let body = try Fixtures.body(fixture)
        let forge = GitHubForge(settings: .init(apiURL: "http://127.0.0.1:1", webhookSecrets: [Secret(Self.secret)], token: nil))
        let headers = WebhookSigner.githubHeaders(event: event, body: body, secret: Self.secret, delivery: "d")
        #expect(try forge.receive(WebhookDelivery(headers: headers, body: body)) == expected)
    }

    @Test(arguments: [
        ("{not json", "malformed webhook: push payload is not what GitHub documents: body is not valid JSON"),
        (#"{"ref":"refs/heads/main","repository":{"full_name":"a/b"}}"#, "malformed webhook: push payload is not what GitHub documents: missing field 'after'"),
        (#"{"ref":"refs/heads/main","after":"xyz","repository":{"full_name":"a/b"}}"#, "malformed webhook: push 'after' is not a commit id: xyz"),
    ])
    func malformedPushIsRejected(body: String, message: String) {
        let bytes = Array(body.utf8)
        let forge = GitHubForge(settings: .init(apiURL: "http://127.0.0.1:1", webhookSecrets: [Secret(Self.secret)], token: nil))
        let headers = WebhookSigner.githubHeaders(event: "push", body: bytes, secret: Self.secret)
        do {
            _ = try forge.receive(WebhookDelivery(headers: headers, body: bytes))
            Issue.record("expected a malformed-payload error")
        } catch {
            #expect(error.description == message)
        }
    }

    @Test func formEncodedPushDecodes() throws {
        let json = try Fixtures.body("github/push.json")
        var allowed = CharacterSet.alphanumerics
        allowed.insert(charactersIn: "-._~")
        let form = Array(("payload=" + String(decoding: json, as: UTF8.self).addingPercentEncoding(withAllowedCharacters: allowed)!).utf8)
        let forge = GitHubForge(settings: .init(apiURL: "http://127.0.0.1:1", webhookSecrets: [Secret(Self.secret)], token: nil))
        var headers = WebhookSigner.githubHeaders(event: "push", body: form, secret: Self.secret, delivery: "d")
        headers.removeAll { $0.name == "Content-Type" }
        headers.append(("Content-Type", "application/x-www-form-urlencoded"))
        guard case .trigger(let push) = try forge.receive(WebhookDelivery(headers: headers, body: form)) else {
            Issue.record("expected a trigger")
            return
        }
        #expect(push.sha == "199eddf46df50de8d02e99bf1c5fdb4101338224")
    }

    @Test func stateWordsFollowTheDesign() {
        #expect(StatusState.allCases.map(GitHubForge.state) == ["pending", "success", "failure", "error", "error", "success"])
    }
}
