import Foundation
import Hummingbird
import HTTPTypes
import HummingbirdTesting
import KilnCore
import KilnForges
import KilnPipeline
import KilnTesting
import Logging
import NIOCore
import Testing

@testable import KilnHTTP

/// The HTTP controllers through Hummingbird's router test client, over the in-memory store:
/// each answer's status and words, without a server, nix or a database.
@Suite struct ControllerTests {
    static let secret = "webhook-secret"
    static let token = "admin-token-0123456789"

    struct Fixture {
        let store = InMemoryStore()
        let coordinator: BuildCoordinator
        let repository: RepositoryID
        let health = HealthState()

        init() {
            coordinator = BuildCoordinator(store: store, logger: Logger(label: "test"))
            repository = store.repository(forge: "github", name: "octo/hello")
        }

        func dependencies(
            directory: TemporaryDirectory, adminToken: String? = ControllerTests.token, maxConcurrentWebhooks: Int = 4,
            maxBodyBytes: Int = 1 << 20, isPrivate: Bool = false
        ) -> HTTPDependencies {
            let forge = GitHubForge(
                settings: .init(apiURL: "http://127.0.0.1:9", webhookSecrets: [Secret(ControllerTests.secret)], token: nil))
            let intake = WebhookIntake(
                endpoints: ["github": ForgeEndpoint(forge: forge, repositories: ["octo/hello": Repository(id: repository, name: "octo/hello", cloneURL: "file:///nowhere")])],
                coordinator: coordinator, logger: Logger(label: "test"))
            return HTTPDependencies(
                intake: intake, coordinator: coordinator, adminToken: adminToken.map(Secret.init), health: health,
                progress: ProgressBoard(), databaseWritable: { true }, paths: WorkerPaths(dataDirectory: directory.path),
                maxBodyBytes: maxBodyBytes, maxConcurrentWebhooks: maxConcurrentWebhooks, publicURL: "https://kiln.example/",
                tokens: store, isPrivate: isPrivate)
        }

        /// A build of a push, queued.
        func accepted() async throws -> BuildID {
            try await coordinator.accept(
                NewDelivery(
                    forge: "github", deliveryID: "d1", repositoryID: repository, repository: "octo/hello", ref: .branch("main"),
                    sha: String(repeating: "1", count: 40))
            ).buildID
        }

        /// Runs `body` with a router test client over these dependencies.
        func test(
            adminToken: String? = ControllerTests.token, maxConcurrentWebhooks: Int = 4, maxBodyBytes: Int = 1 << 20,
            isPrivate: Bool = false, _ body: @Sendable @escaping (any TestClientProtocol) async throws -> Void
        ) async throws {
            try await withTemporaryDirectory("kiln-http") { directory in
                let router = buildRouter(
                    dependencies(
                        directory: directory, adminToken: adminToken, maxConcurrentWebhooks: maxConcurrentWebhooks,
                        maxBodyBytes: maxBodyBytes, isPrivate: isPrivate))
                try await Application(router: router).test(.router, body)
            }
        }
    }

    static func text(_ response: TestResponse) -> String { String(buffer: response.body) }

    static func push(_ sha: String = String(repeating: "1", count: 40), delivery: String = "d1") -> (HTTPFields, ByteBuffer) {
        let (event, body) = ForgePayloads.push(.github, repository: "octo/hello", branch: "main", sha: sha, before: nil)
        var headers = HTTPFields()
        for (name, value) in ForgePayloads.headers(.github, event: event, body: body, secret: secret, delivery: delivery) {
            headers[HTTPField.Name(name)!] = value
        }
        return (headers, ByteBuffer(bytes: body))
    }

    // MARK: Webhooks

    @Test func aSignedPushIsAcceptedOnceAndItsRedeliveryNamesTheSameBuild() async throws {
        let fixture = Fixture()
        try await fixture.test { client in
            let (headers, body) = Self.push()
            let first = try await client.execute(uri: "/webhooks/github", method: .post, headers: headers, body: body)
            #expect(first.status == .accepted && Self.text(first).contains("\"url\":\"https://kiln.example/builds/"))
            let again = try await client.execute(uri: "/webhooks/github", method: .post, headers: headers, body: body)
            #expect(again.status == .accepted && Self.text(again).contains("already received"))
        }
        #expect(try await fixture.store.recentBuilds(limit: 10).count == 1)
    }

    @Test func webhookRefusalsSayWhy() async throws {
        let fixture = Fixture()
        try await fixture.test(maxBodyBytes: 4096) { client in
            var (headers, body) = Self.push()
            let unknown = try await client.execute(uri: "/webhooks/gitlab", method: .post, headers: headers, body: body)
            #expect(unknown.status == .notFound && Self.text(unknown).contains("no forge named 'gitlab'"))
            headers[HTTPField.Name("X-Hub-Signature-256")!] = "sha256=" + String(repeating: "0", count: 64)
            let forged = try await client.execute(uri: "/webhooks/github", method: .post, headers: headers, body: body)
            #expect(forged.status == .unauthorized)
            body = ByteBuffer(repeating: UInt8(ascii: " "), count: 5000)
            let large = try await client.execute(uri: "/webhooks/github", method: .post, headers: headers, body: body)
            #expect(large.status == .contentTooLarge && Self.text(large).contains("server.max-body-bytes (4096 bytes)"))
        }
        #expect(try await fixture.store.recentBuilds(limit: 10).isEmpty, "nothing refused leaves a build")
    }

    @Test func noFreeSlotMeansComeBackLater() async throws {
        try await Fixture().test(maxConcurrentWebhooks: 0) { client in
            let (headers, body) = Self.push()
            let busy = try await client.execute(uri: "/webhooks/github", method: .post, headers: headers, body: body)
            #expect(busy.status == .serviceUnavailable && busy.headers[.retryAfter] == "1")
        }
    }

    // MARK: Health, builds, jobs, events, pages

    @Test func healthSaysWhatIsNotReady() async throws {
        let fixture = Fixture()
        fixture.health.update(.notReady("nix is not installed: install nix-bin"))
        try await fixture.test { client in
            let down = try await client.execute(uri: "/health", method: .get)
            #expect(down.status == .serviceUnavailable && Self.text(down).contains("nix is not installed"))
            fixture.health.update(.ready("nix 2.8.0, sandbox on"))
            let up = try await client.execute(uri: "/health", method: .get)
            #expect(up.status == .ok && Self.text(up).contains("\"status\" : \"ready\""))
        }
    }

    @Test func buildsJobsAndPagesAnswerForWhatExistsAnd404Otherwise() async throws {
        let fixture = Fixture()
        let build = try await fixture.accepted()
        try await fixture.test { client in
            let list = try await client.execute(uri: "/api/v1/builds", method: .get)
            #expect(list.status == .ok && Self.text(list).contains("\"id\" : \(build)"))
            #expect(try await client.execute(uri: "/api/v1/builds/\(build)", method: .get).status == .ok)
            #expect(try await client.execute(uri: "/api/v1/builds/999", method: .get).status == .notFound)
            #expect(try await client.execute(uri: "/api/v1/builds/x", method: .get).status == .notFound)
            #expect(try await client.execute(uri: "/api/v1/jobs/999", method: .get).status == .notFound)
            #expect(try await client.execute(uri: "/api/v1/jobs/999/log", method: .get).status == .notFound)
            let page = try await client.execute(uri: "/builds/\(build)", method: .get)
            #expect(page.status == .ok && Self.text(page).contains("octo/hello"))
            #expect(try await client.execute(uri: "/builds/999", method: .get).status == .notFound)
            #expect(try await client.execute(uri: "/", method: .get).status == .ok)
            let types = try await client.execute(uri: "/api/v1/events?types=build.exploded", method: .get)
            #expect(types.status == .badRequest && Self.text(types).contains("build.exploded"))
        }
    }

    // MARK: Control

    @Test func theControlAPIWantsItsTokenAndSaysWhatItDid() async throws {
        let fixture = Fixture()
        let build = try await fixture.accepted()
        try await fixture.test { client in
            let none = try await client.execute(uri: "/api/v1/builds/\(build)/cancel", method: .post)
            #expect(none.status == .unauthorized)
            let wrong = try await client.execute(
                uri: "/api/v1/builds/\(build)/cancel", method: .post, headers: [.authorization: "Bearer x"])
            #expect(wrong.status == .unauthorized)
            let bearer: HTTPFields = [.authorization: "Bearer \(Self.token)"]
            let cancel = try await client.execute(uri: "/api/v1/builds/\(build)/cancel", method: .post, headers: bearer)
            #expect(cancel.status == .ok)
            let twice = try await client.execute(uri: "/api/v1/builds/\(build)/cancel", method: .post, headers: bearer)
            #expect(twice.status == .conflict && Self.text(twice).contains("already ended: cancelled"))
            let rerun = try await client.execute(uri: "/api/v1/builds/\(build)/rerun", method: .post, headers: bearer)
            #expect(rerun.status == .accepted && Self.text(rerun).contains("https://kiln.example/builds/"))
            let failedOnly = try await client.execute(uri: "/api/v1/builds/\(build)/rerun?failed-only=1", method: .post, headers: bearer)
            let newest = try await fixture.store.recentBuilds(limit: 1).first
            #expect(failedOnly.status == .accepted && newest?.rerunFailedOnly == true && newest?.summary.contains("what failed") == true)
            let bad = try await client.execute(
                uri: "/api/v1/approvals", method: .post, headers: bearer, body: ByteBuffer(string: "{\"build_id\": 1}"))
            #expect(bad.status == .badRequest)
            let notWaiting = try await client.execute(
                uri: "/api/v1/approvals", method: .post, headers: bearer,
                body: ByteBuffer(string: "{\"build_id\": \(build), \"sha\": \"\(String(repeating: "1", count: 40))\"}"))
            #expect(notWaiting.status == .conflict && Self.text(notWaiting).contains("not waiting for approval"))
        }
        #expect(try await fixture.store.buildDetails(build)?.build.state == .cancelled)
    }

    @Test func apiTokensOpenTheControlAPIByScopeUntilRevoked() async throws {
        let fixture = Fixture()
        let build = try await fixture.accepted()
        let (_, control) = try await TokenText.create(name: "bot", scope: .control, in: fixture.store)
        let (_, read) = try await TokenText.create(name: "dashboard", scope: .read, in: fixture.store)
        try await fixture.test(adminToken: nil) { client in
            let none = try await client.execute(uri: "/api/v1/builds/\(build)/rerun", method: .post, headers: [.authorization: "Bearer x"])
            #expect(none.status == .unauthorized && Self.text(none).contains("kiln token create --scope control"))
            #expect(none.headers[.wwwAuthenticate] == "Bearer")
            let reader = try await client.execute(
                uri: "/api/v1/builds/\(build)/rerun", method: .post, headers: [.authorization: "Bearer \(read)"])
            #expect(reader.status == .forbidden && Self.text(reader).contains("scope is read; this needs control"))
            let controller = try await client.execute(
                uri: "/api/v1/builds/\(build)/rerun", method: .post, headers: [.authorization: "Bearer \(control)"])
            #expect(controller.status == .accepted)
            try await fixture.store.revokeToken(name: "bot", at: Date())
            let revoked = try await client.execute(
                uri: "/api/v1/builds/\(build)/rerun", method: .post, headers: [.authorization: "Bearer \(control)"])
            #expect(revoked.status == .unauthorized)
        }
    }

    @Test func aPrivateServerWantsAReadTokenForAllButWebhooksAndHealth() async throws {
        let fixture = Fixture()
        let build = try await fixture.accepted()
        let (_, read) = try await TokenText.create(name: "dashboard", scope: .read, in: fixture.store)
        fixture.health.update(.ready("nix 2.8.0"))
        try await fixture.test(isPrivate: true) { client in
            for uri in ["/", "/builds/\(build)", "/api/v1/builds", "/api/v1/builds/\(build)", "/api/v1/events", "/api/v1/jobs/1/log"] {
                #expect(try await client.execute(uri: uri, method: .get).status == .unauthorized, "\(uri)")
            }
            let page = try await client.execute(uri: "/builds/\(build)", method: .get, headers: [.authorization: "Bearer \(read)"])
            #expect(page.status == .ok)
            let admin = try await client.execute(uri: "/api/v1/builds", method: .get, headers: [.authorization: "Bearer \(Self.token)"])
            #expect(admin.status == .ok, "the admin token reads too")
            #expect(try await client.execute(uri: "/health", method: .get).status == .ok)
            let browser = try await client.execute(uri: "/builds/\(build)", method: .get, headers: [.accept: "text/html,*/*"])
            #expect(browser.status == .seeOther && browser.headers[.location] == "/sign-in", "a browser is sent to sign in")
            let (headers, body) = Self.push(delivery: "d2")
            #expect(try await client.execute(uri: "/webhooks/github", method: .post, headers: headers, body: body).status == .accepted)
        }
    }

    /// A controller is built from the parts it uses only: no bag of everything.
    @Test func aControllerNeedsOnlyItsOwnParts() async throws {
        let health = HealthState()
        health.update(.ready("ok"))
        let router = Router()
        router.addRoutes(HealthController(health: health, databaseWritable: { false }, instance: "kiln-test").endpoints)
        try await Application(router: router).test(.router) { client in
            let answer = try await client.execute(uri: "/health", method: .get)
            #expect(answer.status == .serviceUnavailable && Self.text(answer).contains("not writable"))
            #expect(Self.text(answer).contains("\"kiln-test\""), "the instance is named")
        }
    }

    // MARK: Pages: sign-in, buttons, repositories, badges

    @Test func signingInShowsButtonsWhoseFormsNeedTheirCSRFToken() async throws {
        let fixture = Fixture()
        let build = try await fixture.accepted()
        let (_, control) = try await TokenText.create(name: "me", scope: .control, in: fixture.store)
        try await fixture.test(adminToken: nil) { client in
            let form: HTTPFields = [.contentType: "application/x-www-form-urlencoded"]
            let wrong = try await client.execute(uri: "/sign-in", method: .post, headers: form, body: ByteBuffer(string: "token=nope"))
            #expect(wrong.status == .unauthorized && Self.text(wrong).contains("That token is not valid"))
            let signedIn = try await client.execute(
                uri: "/sign-in", method: .post, headers: form, body: ByteBuffer(string: "token=\(control)"))
            #expect(signedIn.status == .seeOther && signedIn.headers[.location] == "/")
            let cookie = try #require(signedIn.headers[.setCookie])
            #expect(cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax") && cookie.contains("Secure"))
            let session = String(cookie.split(separator: ";")[0])

            let page = try await client.execute(uri: "/builds/\(build)", method: .get, headers: [.cookie: session])
            let html = Self.text(page)
            #expect(html.contains("action=\"/builds/\(build)/cancel\"") && html.contains("signed in · control"))
            let csrf = try #require(html.firstMatch(of: /name="csrf" value="([0-9a-f]{64})"/)?.1)
            #expect(!Self.text(try await client.execute(uri: "/builds/\(build)", method: .get)).contains("/cancel\""),
                "no buttons without a session")

            var headers = form
            headers[.cookie] = session
            let forged = try await client.execute(
                uri: "/builds/\(build)/cancel", method: .post, headers: headers, body: ByteBuffer(string: "csrf=\(String(repeating: "0", count: 64))"))
            #expect(forged.status == .forbidden)
            #expect(try await fixture.store.buildDetails(build)?.build.state == .queued, "a forged form changes nothing")
            let cancelled = try await client.execute(
                uri: "/builds/\(build)/cancel", method: .post, headers: headers, body: ByteBuffer(string: "csrf=\(csrf)"))
            #expect(cancelled.status == .seeOther && cancelled.headers[.location] == "/builds/\(build)")
            #expect(try await fixture.store.buildDetails(build)?.build.state == .cancelled)
            let rerun = try await client.execute(
                uri: "/builds/\(build)/rerun", method: .post, headers: headers, body: ByteBuffer(string: "csrf=\(csrf)"))
            #expect(rerun.status == .seeOther && rerun.headers[.location] != "/builds/\(build)")
            // Revoking the token ends its sessions at once.
            try await fixture.store.revokeToken(name: "me", at: Date())
            let revoked = try await client.execute(uri: "/builds/\(build)", method: .get, headers: [.cookie: session])
            #expect(!Self.text(revoked).contains("signed in ·"), "a revoked token's session is over")
            let (_, again) = try await TokenText.create(name: "me-again", scope: .control, in: fixture.store)
            let renewed = try await client.execute(
                uri: "/sign-in", method: .post, headers: form, body: ByteBuffer(string: "token=\(again)"))
            headers[.cookie] = String(try #require(renewed.headers[.setCookie]).split(separator: ";")[0])
            let fresh = Self.text(try await client.execute(uri: "/builds/\(build)", method: .get, headers: [.cookie: headers[.cookie]!]))
            let csrfAgain = try #require(fresh.firstMatch(of: /name="csrf" value="([0-9a-f]{64})"/)?.1)
            let out = try await client.execute(uri: "/sign-out", method: .post, headers: headers, body: ByteBuffer(string: "csrf=\(csrfAgain)"))
            #expect(out.headers[.setCookie]?.contains("Max-Age=0") == true)
            let after = try await client.execute(
                uri: "/builds/\(build)/cancel", method: .post, headers: headers, body: ByteBuffer(string: "csrf=\(csrfAgain)"))
            #expect(after.status == .unauthorized, "a session ends when its browser signs out")
        }
    }

    @Test func aRepositoryHasItsPageItsJSONAndItsBadge() async throws {
        let fixture = Fixture()
        let build = try await fixture.accepted()
        try await fixture.test { client in
            let page = try await client.execute(uri: "/github/octo/hello", method: .get)
            #expect(page.status == .ok && Self.text(page).contains("/badge/github/octo/hello.svg") && Self.text(page).contains("main"))
            #expect(try await client.execute(uri: "/github/octo/nothing", method: .get).status == .notFound)
            let json = try await client.execute(uri: "/api/v1/repositories/github/octo/hello", method: .get)
            #expect(json.status == .ok && Self.text(json).contains("\"badge\" : \"https://kiln.example/badge/github/octo/hello.svg\""))
            let unknown = try await client.execute(uri: "/badge/github/octo/hello.svg?branch=main", method: .get)
            #expect(unknown.status == .ok && unknown.headers[.contentType]?.hasPrefix("image/svg+xml") == true)
            #expect(Self.text(unknown).contains(">unknown<") && unknown.headers[.cacheControl]?.contains("no-cache") == true)
            try await fixture.coordinator.cancel([build], .requested)
            let cancelled = try await client.execute(uri: "/badge/github/octo/hello.svg?branch=main", method: .get)
            #expect(Self.text(cancelled).contains(">cancelled<"))
            let bad = try await client.execute(uri: "/api/v1/builds?state=exploded", method: .get)
            #expect(bad.status == .badRequest && Self.text(bad).contains("'state' must be one of"))
            let filtered = try await client.execute(uri: "/api/v1/builds?repository=octo/hello&limit=1", method: .get)
            #expect(Self.text(filtered).contains("\"next\" : \"/api/v1/builds?repository=octo/hello&before=\(build)\""))
            let filteredPage = try await client.execute(uri: "/?state=running", method: .get)
            #expect(filteredPage.status == .ok && !Self.text(filteredPage).contains("href=\"/builds/\(build)\""))
        }
    }

    @Test func aFollowedLogStreamsWhatTheJobWritesUntilItEnds() async throws {
        let fixture = Fixture()
        let build = try await fixture.accepted()
        _ = try await fixture.coordinator.claimBuildToPlan(excluding: [])
        try await fixture.coordinator.finishPlanning(
            build, .planned([PlannedJob(name: "a", target: .installables([".#a"]), needs: [], timeout: .seconds(60), maxSilent: .seconds(60))]),
            resolution: nil)
        let (claimed, _) = try #require(try await fixture.coordinator.claimJob(freeMemory: .max))
        try await withTemporaryDirectory("kiln-follow") { directory in
            let paths = WorkerPaths(dataDirectory: directory.path)
            try FileManager.default.createDirectory(atPath: paths.logs, withIntermediateDirectories: true)
            let log = JobLogs(paths).log(claimed.job.id)
            try "already here\n".write(toFile: log, atomically: true, encoding: .utf8)
            let router = buildRouter(fixture.dependencies(directory: directory))
            try await Application(router: router).test(.router) { client in
                async let followed = client.execute(uri: "/api/v1/jobs/\(claimed.job.id)/log?follow=1&offset=5", method: .get)
                // The job writes more, then ends: the stream sends it all, then closes. (The pause only
                // lets the stream start before the write, so that following is what sends it; the
                // answer must be the same either way.)
                try await Task.sleep(for: .milliseconds(300))
                let handle = try #require(FileHandle(forWritingAtPath: log))
                try handle.seekToEnd()
                try handle.write(contentsOf: Data("written later\n".utf8))
                try handle.close()
                _ = try await fixture.coordinator.finishJob(claimed.job.id, JobReport(outcome: .succeeded, duration: .seconds(1)), details: nil)
                let answer = try await followed
                #expect(answer.status == .ok && Self.text(answer) == "dy here\nwritten later\n")
            }
            let bad = try await Application(router: router).test(.router) { client in
                try await client.execute(uri: "/api/v1/jobs/\(claimed.job.id)/log?follow=1&offset=-3", method: .get)
            }
            #expect(bad.status == .badRequest)
        }
    }

    @Test func anApprovalIsRecordedUnderTheTokenThatMadeIt() async throws {
        let fixture = Fixture()
        let sha = String(repeating: "5", count: 40)
        var fork = NewDelivery(
            forge: "github", deliveryID: "pr", repositoryID: fixture.repository, repository: "octo/hello", ref: .branch("f"), sha: sha)
        fork.pullRequest = PullRequestInfo(number: 4, headBranch: "f", baseBranch: "main", isFork: true)
        let build = try await fixture.coordinator.accept(fork).buildID
        _ = try await fixture.coordinator.claimBuildToPlan(excluding: [])
        try await fixture.coordinator.finishPlanning(build, .awaitingApproval(reason: "waiting"), resolution: nil)
        let (_, control) = try await TokenText.create(name: "reviewer-bot", scope: .control, in: fixture.store)
        try await fixture.test { client in
            let answer = try await client.execute(
                uri: "/api/v1/approvals", method: .post, headers: [.authorization: "Bearer \(control)"],
                body: ByteBuffer(string: "{\"build_id\": \(build), \"sha\": \"\(sha)\", \"approver\": \"someone-else\"}"))
            #expect(answer.status == .ok)
        }
        let summary = try await fixture.store.buildDetails(build)?.build.summary ?? ""
        #expect(summary == "approved by token reviewer-bot; queued", "the caller's own claim is not what is recorded: \(summary)")
    }
}
