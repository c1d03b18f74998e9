import Foundation
import KilnTesting
import Testing

/// The Iglu Builder socket, `/api/v1/build`, through `kiln serve` with real nix and a git
/// repository served over smart HTTP: every documented answer and close code.
@Suite(.enabled(if: NixTest.enabled, "nix is not installed (set KILN_REQUIRE_NIX to make this a failure)"))
struct IgluSocketTests {
    static func job(_ url: String, password: String, command: String, spelling: String = "current") -> String {
        let git = #""noClone": false, "repository": "\#(url)", "branch": "main", "gitUsername": "x-access-token", "gitKey": "\#(password)", "requiresAuth": true"#
        if spelling == "current" {
            return #"{"git": {\#(git)}, "buildOptions": {"command": "\#(command)", "cachix": {"push": false}}}"#
        }
        return #"{"git_config": {\#(git)}, "build_options": {"command": "\#(command)", "cachix_config": {"push": false}}}"#
    }

    @Test(.timeLimit(.minutes(3))) func everyAnswerTheIgluBuilderDocuments() async throws {
        try await withTemporaryDirectory("kiln-iglu") { served in
            let password = "iglu-key-\(UInt64.random(in: 1_000_000_000...9_999_999_999))"
            let server = try await GitHTTPServer(root: served.appending("served"), user: "x-access-token", password: password)
            defer { Task { await server.stop() } }
            let origin = try TestGitRepository(at: served.appending("served/app.git"))
            let marker = String(UInt64.random(in: 1_000_000_000...9_999_999_999))
            try TestFlake(packages: [
                "app": TestFlake.succeeding("iglu-\(marker)"),
                "slow": "echo slow-start-\(marker); $bb sleep 2; $bb mkdir $out",
                "bad": "echo iglu-failing-\(marker); exit 1",
            ]).write(to: origin.path)
            _ = try origin.commit("an app")
            let (world, _) = try await AdHocBuildTests.world(gitOrigins: [server.url])
            defer { Task { await world.close() } }
            let kiln = try await KilnInstance.start(config: world.configPath)
            defer { Task { await kiln.stop() } }
            let socket = kiln.url.replacingOccurrences(of: "http://", with: "ws://") + "/api/v1/build"
            let url = "\(server.url)/app.git"
            let token = AdHocBuildTests.adminToken

            // A build that succeeds: Start Building, its output line by line, success, close 1000.
            let good = try await IgluClient.run(url: socket, token: token, job: Self.job(url, password: password, command: "nix build .#app -L"))
            let answers = good.objects
            #expect(answers.first?["msg"] as? String == "Start Building" && answers.first?["jobStatus"] as? String == "starting", "\(answers)")
            #expect(answers.dropFirst().dropLast().allSatisfy { $0["jobStatus"] as? String == "running" && $0["stdout"] is String })
            #expect(answers.contains { ($0["stdout"] as? String)?.contains("iglu-\(marker)") == true }, "\(answers)")
            let last = try #require(answers.last)
            #expect(last["msg"] as? String == "Build was successfull" && last["buildExitCode"] as? Int == 0 && last["jobStatus"] as? String == "success")
            #expect(answers.allSatisfy { ($0["timestamp"] as? Int ?? 0) > 1_700_000_000_000 })
            #expect(good.closeCode == 1000)
            #expect(!good.answers.contains { $0.text.contains(password) })
            if let sent = good.sentAt, let start = good.answers.first?.at {
                print("iglu: job message to Start Building: \(start - sent)")
            }

            // A build that fails, in the current field spelling: the builder's exit code, close 1011.
            let bad = try await IgluClient.run(
                url: socket, token: token, job: Self.job(url, password: password, command: "nix build .#bad", spelling: "snake"))
            let failed = try #require(bad.objects.last)
            #expect(failed["error"] as? String == "Something went wrong while building. Builder exited with error code 100", "\(bad.objects)")
            #expect(failed["buildExitCode"] as? Int == 100 && failed["jobStatus"] as? String == "failed")
            #expect(bad.objects.contains { ($0["stdout"] as? String)?.contains("iglu-failing-\(marker)") == true })
            #expect(bad.closeCode == 1011)

            // Refusals: each documented text, close 1007, nothing built.
            for (job, error, exitCode) in [
                ("{not json", "Not a valid JSON", nil),
                (#"{"git": {"noClone": false}}"#, "JSON schema is not valid.", nil),
                (#"{"git": {"noClone": "no"}, "buildOptions": {"command": "nix build .#app", "cachix": {"push": false}}}"#, "JSON schema is not valid.", nil),
                (Self.job(url, password: password, command: "rm -rf /"), "Invalid command: 'rm -rf /'", 2 as Int?),
                (Self.job(url, password: password, command: "nix build .#app --option sandbox false"), "Invalid command: 'nix build .#app --option sandbox false'", 2),
                (Self.job(url, password: password, command: "nix build $(id)"), "Invalid command: 'nix build $(id)'", 2),
            ] {
                let session = try await IgluClient.run(url: socket, token: token, job: job)
                #expect(session.objects.count == 1, "\(session.objects)")
                #expect(session.objects.first?["error"] as? String == error && session.objects.first?["jobStatus"] as? String == "failed")
                #expect(session.objects.first?["buildExitCode"] as? Int == exitCode)
                #expect(session.closeCode == 1007, "\(job)")
            }

            // One job at a time: a second connection is told so and closed.
            let slowJob = Self.job(url, password: password, command: "nix build .#slow")
            async let first = IgluClient.run(url: socket, token: token, job: slowJob)
            try await eventually("the slow job to start", within: .seconds(60)) {
                (try await HTTPTestClient.send("GET", "\(kiln.url)/api/v1/builds?state=running").json["builds"] as? [Any])?.isEmpty == false
            }
            let second = try await IgluClient.run(url: socket, token: token, job: slowJob)
            #expect(second.objects.map { $0["error"] as? String } == ["A build job is already running."])
            #expect(second.objects.first?["jobStatus"] as? String == "running")
            #expect(try await first.objects.last?["jobStatus"] as? String == "success")

            // Without a control token the socket does not open.
            await #expect(throws: (any Error).self) { _ = try await IgluClient.run(url: socket, token: nil, job: nil) }
        }
    }
}
