import Crypto
import Foundation
import KilnCore
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

    /// `cachix.push: true`: the closure goes to a strict fake Cachix, NARs and signed narinfos;
    /// a second push sends nothing the cache has; a refused token fails the job.
    @Test(.timeLimit(.minutes(3))) func cachixPushUploadsTheClosureSigned() async throws {
        try await withTemporaryDirectory("kiln-iglu-cachix") { served in
            let password = "iglu-key-\(UInt64.random(in: 1_000_000_000...9_999_999_999))"
            let server = try await GitHTTPServer(root: served.appending("served"), user: "x-access-token", password: password)
            defer { Task { await server.stop() } }
            let origin = try TestGitRepository(at: served.appending("served/app.git"))
            let marker = String(UInt64.random(in: 1_000_000_000...9_999_999_999))
            try TestFlake(packages: ["app": TestFlake.succeeding("cachix-\(marker)")]).write(to: origin.path)
            _ = try origin.commit("an app")
            let key = Curve25519.Signing.PrivateKey()
            let signingKey = (key.rawRepresentation + key.publicKey.rawRepresentation).base64EncodedString()
            let cachix = try await FakeCachix(name: "default", token: "cachix-token", publicKey: key.publicKey.rawRepresentation)
            defer { Task { await cachix.stop() } }
            let (world, _) = try await AdHocBuildTests.world(gitOrigins: [server.url], cachixHosts: [cachix.url])
            defer { Task { await world.close() } }
            let kiln = try await KilnInstance.start(config: world.configPath)
            defer { Task { await kiln.stop() } }
            let socket = kiln.url.replacingOccurrences(of: "http://", with: "ws://") + "/api/v1/build"
            func job(token: String) -> String {
                #"{"git": {"noClone": false, "repository": "\#(server.url)/app.git", "gitKey": "\#(password)", "requiresAuth": true}, "buildOptions": {"command": "nix build .#app", "cachix": {"push": true, "target": "\#(cachix.url)/default", "apiKey": "\#(token)", "signingKey": "\#(signingKey)"}}}"#
            }

            let pushed = try await IgluClient.run(url: socket, token: AdHocBuildTests.adminToken, job: job(token: "cachix-token"))
            #expect(pushed.objects.last?["jobStatus"] as? String == "success", "\(pushed.objects) \(cachix.refusals)")
            #expect(pushed.closeCode == 1000)
            #expect(cachix.refusals.isEmpty, "\(cachix.refusals)")
            // The app's output and everything it refers to, each with nix's own NAR hash.
            let build = try #require((try await HTTPTestClient.send("GET", "\(kiln.url)/api/v1/builds?limit=1").json["builds"] as? [[String: Any]])?.first)
            let details = try await kiln.build(try #require(build["id"] as? Int))
            let output = try #require(((details["jobs"] as? [[String: Any]])?.first?["outputs"] as? [[String: Any]])?.first?["path"] as? String)
            let (status, info) = try await Processes.run(
                "/usr/bin/nix", ["path-info", "--extra-experimental-features", "nix-command", "--json", "--recursive", output])
            try #require(status == 0)
            let closure = try #require(try JSONSerialization.jsonObject(with: Data(info.utf8)) as? [[String: Any]])
            #expect(cachix.stored.count == closure.count)
            for entry in closure {
                let path = try #require(entry["path"] as? String)
                let stored = try #require(cachix.stored[String((path as NSString).lastPathComponent.prefix(32))], "\(path) was not pushed")
                #expect(stored.narHash == "sha256:" + (NixHash.sha256Nix32(entry["narHash"] as? String ?? "") ?? ""))
                #expect(stored.narSize == (entry["narSize"] as? NSNumber)?.int64Value)
                #expect(stored.signature != nil)
            }
            #expect((details["jobs"] as? [[String: Any]])?.first?["cache"] as? String == "pushed to cachix cache default at \(cachix.url)")
            let uploads = cachix.uploadedNARs

            // The same job again: built afresh (a push is never reused away), nothing new uploaded.
            let again = try await IgluClient.run(url: socket, token: AdHocBuildTests.adminToken, job: job(token: "cachix-token"))
            #expect(again.objects.last?["jobStatus"] as? String == "success")
            #expect(cachix.uploadedNARs == uploads)

            // A token the cache refuses fails the job, and says so in its log.
            let refused = try await IgluClient.run(url: socket, token: AdHocBuildTests.adminToken, job: job(token: "wrong"))
            #expect(refused.objects.last?["error"] as? String == "Something went wrong while building. Builder exited with error code 1")
            #expect(refused.objects.contains { ($0["stdout"] as? String)?.contains("the cache refused the token (HTTP 401)") == true })
            #expect(refused.closeCode == 1011)
            #expect(!refused.answers.contains { $0.text.contains(signingKey) })
        }
    }

    /// `noClone: true` builds the configured work directory's branch, whatever `repository` says.
    @Test(.timeLimit(.minutes(2))) func noCloneBuildsTheConfiguredWorkDirectory() async throws {
        try await withTemporaryDirectory("kiln-iglu-workdir") { directory in
            let workdir = try TestGitRepository(at: directory.appending("workdir"))
            let marker = String(UInt64.random(in: 1_000_000_000...9_999_999_999))
            try TestFlake(packages: ["local": "echo cores=$NIX_BUILD_CORES; " + TestFlake.succeeding("workdir-\(marker)")]).write(to: workdir.path)
            let sha = try workdir.commit("the work directory")
            let (world, _) = try await AdHocBuildTests.world(gitOrigins: [], igluWorkdir: workdir.path)
            defer { Task { await world.close() } }
            let kiln = try await KilnInstance.start(config: world.configPath)
            defer { Task { await kiln.stop() } }
            let socket = kiln.url.replacingOccurrences(of: "http://", with: "ws://") + "/api/v1/build"
            let job = #"{"git": {"noClone": true, "repository": "https://elsewhere.example/x.git", "branch": "main"}, "buildOptions": {"command": "nix build .#local --cores 1 -L", "maxJobs": 1, "cachix": {"push": false}}}"#
            let session = try await IgluClient.run(url: socket, token: AdHocBuildTests.adminToken, job: job)
            #expect(session.objects.last?["jobStatus"] as? String == "success", "\(session.objects)")
            #expect(session.objects.contains { ($0["stdout"] as? String)?.contains("workdir-\(marker)") == true })
            // The command's --cores reached nix.
            #expect(session.objects.contains { ($0["stdout"] as? String)?.hasSuffix("cores=1") == true }, "\(session.objects)")
            let build = try #require((try await HTTPTestClient.send("GET", "\(kiln.url)/api/v1/builds?limit=1").json["builds"] as? [[String: Any]])?.first)
            #expect(build["sha"] as? String == sha)
            #expect(build["service"] as? String == "iglu")
        }
    }
}
