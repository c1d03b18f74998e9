import Foundation
import KilnTesting
import Testing

/// `kiln serve` configured with a GitHub App reporting through check runs, over real sockets.
@Suite(.enabled(if: NixTest.enabled, "nix is not installed (set KILN_REQUIRE_NIX to make this a failure)"))
struct GitHubAppEndToEndTests {
    static let secret = "app-webhook-secret"
    static let name = "octo/hello"

    @Test(.timeLimit(.minutes(3)))
    func checkRunsReportAndTheirRerunButtonBuildsAgain() async throws {
        let directory = try TemporaryDirectory("kiln-app")
        defer { directory.remove() }
        let keys = try FakeForge.appKeyPair()
        let github = try await FakeForge(
            .github, token: "no-static-token", repositories: [Self.name], appPublicKeyPEM: keys.publicKeyPEM, appID: "4711")
        defer { Task { await github.stop() } }
        try keys.privateKeyPEM.write(toFile: directory.appending("app.pem"), atomically: true, encoding: .utf8)
        try Self.secret.write(toFile: directory.appending("secret"), atomically: true, encoding: .utf8)
        try """
            server: {listen: "127.0.0.1:0", public-url: "http://kiln.test"}
            storage: {data-dir: data}
            nix: {options: {substituters: ""}}
            forges:
              github:
                type: github
                api-url: "\(github.url)"
                webhook-secret-files: [secret]
                app-id: "4711"
                app-private-key-file: app.pem
                status-api: checks
            repositories:
              - {forge: github, name: "\(Self.name)", clone-url: "file://\(directory.appending("origin"))"}
            """.write(toFile: directory.appending("kiln.yaml"), atomically: true, encoding: .utf8)

        let origin = try TestGitRepository(at: directory.appending("origin"))
        let marker = String(UInt64.random(in: 1_000_000_000...9_999_999_999))
        try TestFlake(packages: ["ok": TestFlake.succeeding("ok-\(marker)"), "bad": "echo bad-\(marker) is broken; exit 3"])
            .write(to: origin.path)
        try origin.write(".kiln.yml", "jobs:\n  ok:\n    build: .#ok\n  bad:\n    build: .#bad\n")
        let sha = try origin.commit("one job passes, one fails")
        let kiln = try await KilnInstance.start(config: directory.appending("kiln.yaml"))
        defer { Task { await kiln.stop() } }

        let pushed = try await kiln.push(repository: Self.name, sha: sha, secret: Self.secret)
        #expect(pushed.status == 202, "\(pushed.body)")
        let original = try #require(pushed.json["build_id"] as? Int)
        try await eventually("every check run to complete", within: .seconds(90)) {
            ["kiln", "kiln/ok", "kiln/bad"].allSatisfy { github.states($0, sha: sha).last.map(Self.isCompleted) ?? false }
        }
        #expect(github.states("kiln", sha: sha).last == "failure")
        #expect(github.states("kiln/ok", sha: sha).last == "success")
        let bad = try #require(github.statuses.last { $0.context == "kiln/bad" })
        #expect(bad.state == "failure" && bad.actions == ["rerun"])
        #expect(bad.summary?.contains("bad-\(marker) is broken") == true, "the summary ends with the log: \(bad.summary ?? "")")
        let ok = try #require(github.statuses.last { $0.context == "kiln/ok" })
        #expect(ok.summary?.contains("/nix/store/") == true, "the summary lists the outputs: \(ok.summary ?? "")")
        #expect(github.tokenExchanges == 1, "one installation token serves every check run")
        #expect(github.checkRunCount == 3, "one check run per context, updated in place")
        #expect(github.refusals.isEmpty, "\(github.refusals)")

        // GitHub's "Re-run" on the failed check, after the installation token was revoked.
        github.revokeInstallationTokens()
        let posted = github.statuses.count
        let body = Array("""
            {"action":"rerequested","check_run":{"id":3,"name":"kiln/bad","head_sha":"\(sha)","status":"completed"},
             "repository":{"id":1,"name":"hello","full_name":"\(Self.name)","owner":{"login":"octo"}},
             "sender":{"login":"octo"}}
            """.utf8)
        let rerun = try await HTTPTestClient.send(
            "POST", "\(kiln.url)/webhooks/github",
            headers: WebhookSigner.githubHeaders(event: "check_run", body: body, secret: Self.secret), body: body)
        #expect(rerun.status == 202, "\(rerun.body)")
        let again = try #require(rerun.json["build_id"] as? Int)
        #expect(again != original)
        try await eventually("the re-run's check runs to complete", within: .seconds(90)) {
            github.statuses.dropFirst(posted).contains { $0.context == "kiln" && Self.isCompleted($0.state) }
        }
        let build = try await kiln.build(again)
        #expect(build["rerun_of"] as? Int == original)
        #expect(build["state"] as? String == "failed")
        let jobs = try #require(build["jobs"] as? [[String: Any]])
        #expect(jobs.count == 2)
        #expect(jobs.allSatisfy { !($0["summary"] as? String ?? "").hasPrefix("reused") }, "a re-run builds again: \(jobs)")
        #expect(github.tokenExchanges == 2, "the revoked token was replaced")
        #expect(github.refusals.allSatisfy { $0 == "Bad credentials" } && !github.refusals.isEmpty)
    }

    /// A check run's state once it has a conclusion (the fake records the conclusion as its state).
    static func isCompleted(_ state: String) -> Bool { !["queued", "in_progress"].contains(state) }
}
