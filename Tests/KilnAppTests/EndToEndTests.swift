import Foundation
import KilnTesting
import Testing

@Suite(.enabled(if: NixTest.enabled, "nix is not installed (set KILN_REQUIRE_NIX to make this a failure)"))
struct EndToEndTests {
    /// A signed push with jobs that succeed, fail and go silent: statuses go pending → final,
    /// the aggregate fails; a redelivery starts nothing; bad requests are refused.
    @Test(.timeLimit(.minutes(3))) func pushBuildsAndReportsEveryJob() async throws {
        let world = try await World.make()
        defer { Task { await world.close() } }
        try TestFlake(packages: [
            "ok": TestFlake.succeeding("fine"),
            "bad": "echo going-to-fail; exit 1",
            "quiet": "echo then-silence; $bb sleep 600; true",
        ]).write(to: world.repository.path)
        try world.repository.write(
            ".kiln.yml",
            """
            on:
              push:
                branches: [main]
            jobs:
              ok:
                build: .#ok
              bad:
                build: .#bad
              quiet:
                build: .#quiet
                max-silent: 2s
            """)
        let sha = try world.repository.commit("three jobs")
        let kiln = try await KilnInstance.start(config: world.configPath)
        defer { Task { await kiln.stop() } }

        let delivery = UUID().uuidString
        let accepted = try await kiln.push(repository: World.name, sha: sha, secret: World.secret, delivery: delivery)
        #expect(accepted.status == 202)
        let buildID = try #require(accepted.json["build_id"] as? Int)

        // One batch posts its statuses side by side: the aggregate may land before a job's.
        try await eventually("every status to be final", within: .seconds(120)) {
            ["kiln", "kiln/ok", "kiln/bad", "kiln/quiet"].allSatisfy { world.github.states($0).count == 2 }
        }
        #expect(world.github.states("kiln") == ["pending", "failure"])
        #expect(world.github.states("kiln/ok") == ["pending", "success"])
        #expect(world.github.states("kiln/bad") == ["pending", "failure"])
        #expect(world.github.states("kiln/quiet") == ["pending", "failure"])
        #expect(world.github.refusals.isEmpty)
        // Work trees live only while their job runs; the mirror stays.
        #expect(try FileManager.default.contentsOfDirectory(atPath: world.directory.appending("data/workspaces")).isEmpty)
        #expect(try FileManager.default.contentsOfDirectory(atPath: world.directory.appending("data/mirrors")) == ["1.git"])
        let statuses = world.github.statuses
        #expect(statuses.allSatisfy { $0.sha == sha && $0.repository == World.name })
        #expect(statuses.allSatisfy { $0.targetURL == "http://kiln.test/builds/\(buildID)" })
        #expect(statuses.first { $0.context == "kiln/quiet" && $0.state == "failure" }?.description == "no output for 2s; stopped")
        #expect(statuses.first { $0.context == "kiln/ok" && $0.state == "success" }?.description.hasPrefix("built 1 output in") == true)

        let build = try await kiln.build(buildID)
        #expect(build["state"] as? String == "failed")
        let jobs = try #require(build["jobs"] as? [[String: Any]])
        #expect(Dictionary(uniqueKeysWithValues: jobs.map { ($0["name"] as! String, $0["state"] as! String) })
            == ["ok": "succeeded", "bad": "failed", "quiet": "timed_out"])
        let bad = try #require(jobs.first { $0["name"] as? String == "bad" })
        let log = try await HTTPTestClient.send("GET", try #require(bad["log_url"] as? String).replacingOccurrences(of: "http://kiln.test", with: kiln.url))
        #expect(log.body.contains("going-to-fail"))
        let page = try await HTTPTestClient.send("GET", "\(kiln.url)/builds/\(buildID)")
        #expect(page.status == 200 && page.body.contains("going-to-fail") && page.body.contains("then-silence"))

        // A redelivery answers with the same build and starts nothing.
        let postsBefore = world.github.attempts
        let again = try await kiln.push(repository: World.name, sha: sha, secret: World.secret, delivery: delivery)
        #expect(again.status == 202)
        #expect(again.json["build_id"] as? Int == buildID)
        #expect(again.json["new"] as? Bool == false)
        let builds = try await HTTPTestClient.send("GET", "\(kiln.url)/api/v1/builds").json["builds"] as? [Any]
        #expect(builds?.count == 1)
        #expect((try await kiln.build(buildID))["statuses"] as? [Any] != nil)
        // Each context went queued → running → its end in Kiln's outbox (sent, or replaced unsent by the next).
        let recorded = try #require((try await kiln.build(buildID))["statuses"] as? [[String: Any]])
        let sequence = { (context: String) in recorded.filter { $0["context"] as? String == context }.compactMap { $0["state"] as? String } }
        #expect(sequence("kiln") == ["pending", "running", "running", "failed"])
        let phases = recorded.filter { $0["context"] as? String == "kiln" }.compactMap { $0["description"] as? String }
        #expect(Array(phases.dropFirst().prefix(2)) == ["evaluating 3 jobs", "building 3 jobs"], "\(phases)")
        #expect(sequence("kiln/ok") == ["pending", "running", "succeeded"])
        #expect(sequence("kiln/quiet") == ["pending", "running", "failed"])
        #expect(world.github.attempts == postsBefore)

        // An unconfigured repository, a bad signature, an oversized body.
        let unknown = try await kiln.push(repository: "octo/other", sha: sha, secret: World.secret)
        #expect(unknown.status == 404)
        #expect(unknown.json["error"] as? String == "repository 'octo/other' is not configured for forge 'github'")
        let forged = try await kiln.push(repository: World.name, sha: sha, secret: "not-the-secret")
        #expect(forged.status == 401)
        let huge = [UInt8](repeating: UInt8(ascii: " "), count: 70_000)
        let tooLarge = try await HTTPTestClient.send(
            "POST", "\(kiln.url)/webhooks/github",
            headers: WebhookSigner.githubHeaders(event: "push", body: huge, secret: World.secret), body: huge)
        #expect(tooLarge.status == 413)
        let nowhere = try await HTTPTestClient.send("POST", "\(kiln.url)/webhooks/gitlab", body: [])
        #expect(nowhere.status == 404)
    }

    /// An invalid pipeline file gives one final `kiln` status naming the problem, and no job statuses.
    @Test(.timeLimit(.minutes(2))) func invalidPipelineFileFailsWithItsPosition() async throws {
        let world = try await World.make()
        defer { Task { await world.close() } }
        try world.repository.write(".kiln.yml", "jobs:\n  hello:\n    bulid: .#hello\n")
        let sha = try world.repository.commit("typo")
        let kiln = try await KilnInstance.start(config: world.configPath)
        defer { Task { await kiln.stop() } }
        let accepted = try await kiln.push(repository: World.name, sha: sha, secret: World.secret)
        #expect(accepted.status == 202)
        try await eventually("the kiln status", within: .seconds(60)) { !world.github.statuses.isEmpty }
        #expect(world.github.statuses.map(\.context) == ["kiln"])
        #expect(world.github.statuses.first?.state == "failure")
        #expect(world.github.statuses.first?.description == ".kiln.yml:3:5: unknown key 'bulid' in 'jobs.hello' — did you mean 'build'?")
    }

    /// A push that the `on` filters exclude ends skipped and posts nothing.
    @Test(.timeLimit(.minutes(2))) func filteredPushIsSkippedSilently() async throws {
        let world = try await World.make()
        defer { Task { await world.close() } }
        try world.repository.write(".kiln.yml", "on:\n  push:\n    branches: [release]\njobs:\n  hello:\n    build: .#hello\n")
        let sha = try world.repository.commit("not on release")
        let kiln = try await KilnInstance.start(config: world.configPath)
        defer { Task { await kiln.stop() } }
        let accepted = try await kiln.push(repository: World.name, sha: sha, secret: World.secret)
        let buildID = try #require(accepted.json["build_id"] as? Int)
        let build = try await eventually("the build to end", within: .seconds(60)) { () -> [String: Any]? in
            let build = try await kiln.build(buildID)
            return build["state"] as? String == "queued" || build["state"] as? String == "planning" ? nil : build
        }
        #expect(build["state"] as? String == "skipped")
        #expect(build["summary"] as? String == "branch 'main' does not match on.push.branches (release)")
        #expect((build["statuses"] as? [Any])?.isEmpty == true)
        #expect(world.github.attempts == 0)
    }
}

@Suite(.enabled(if: NixTest.enabled, "nix is not installed (set KILN_REQUIRE_NIX to make this a failure)"))
struct PipelineFeatureTests {
    /// `[skip ci]` posts one final status that says so; `allow-failure` keeps the build green
    /// and lets dependents run; `paths-ignore` compares with the push's previous commit; the job
    /// API reports what nix built and what it cost.
    @Test(.timeLimit(.minutes(3))) func skipAllowFailurePathsAndAccounting() async throws {
        let world = try await World.make()
        defer { Task { await world.close() } }
        // Unique scripts, so nix builds (and logs) them rather than finding them already built.
        let marker = UUID().uuidString
        try TestFlake(packages: ["flaky": "echo flaky-\(marker); exit 1", "after": TestFlake.succeeding("after-\(marker)")])
            .write(to: world.repository.path)
        try world.repository.write(
            ".kiln.yml",
            """
            on:
              push:
                paths-ignore: ["docs/**"]
            jobs:
              flaky:
                build: .#flaky
                allow-failure: true
              after:
                build: .#after
                needs: flaky
            """)
        let first = try world.repository.commit("jobs")
        let kiln = try await KilnInstance.start(config: world.configPath)
        defer { Task { await kiln.stop() } }

        let built = try #require(try await kiln.push(repository: World.name, sha: first, secret: World.secret).json["build_id"] as? Int)
        // One batch posts its statuses side by side: the aggregate may land before a job's.
        try await eventually("the first build's final statuses", within: .seconds(90)) {
            ["kiln", "kiln/flaky", "kiln/after"].allSatisfy { world.github.states($0).count == 2 }
        }
        #expect(world.github.states("kiln") == ["pending", "success"])
        #expect(world.github.states("kiln/flaky") == ["pending", "failure"])
        #expect(world.github.states("kiln/after") == ["pending", "success"])
        #expect(world.github.statuses.last { $0.context == "kiln/flaky" }?.description.hasPrefix("allowed to fail: failed after") == true)
        #expect(world.github.statuses.last { $0.context == "kiln" }?.description.contains("allowed to fail: flaky") == true)

        let jobs = try #require((try await kiln.build(built))["jobs"] as? [[String: Any]])
        let after = try #require(jobs.first { $0["name"] as? String == "after" })
        #expect((after["cpu_seconds"] as? Double).map { $0 >= 0 } == true)
        #expect((after["peak_memory_kilobytes"] as? Int).map { $0 > 0 } == true)
        #expect((after["derivations"] as? [String])?.count == 1)
        let output = try #require((after["outputs"] as? [[String: Any]])?.first)
        #expect(output["name"] as? String == "out")
        #expect((output["nar_size_bytes"] as? Int).map { $0 > 0 } == true)
        #expect((output["nar_hash"] as? String)?.hasPrefix("sha256-") == true)
        let derivationLog = try #require((after["derivation_logs"] as? [[String: Any]])?.first?["url"] as? String)
        let log = try await HTTPTestClient.send("GET", derivationLog.replacingOccurrences(of: "http://kiln.test", with: kiln.url))
        #expect(log.status == 200 && log.body.contains("after-\(marker)"))
        let refused = try await HTTPTestClient.send("GET", "\(kiln.url)/api/v1/jobs/1/log?derivation=../../kiln.sqlite")
        #expect(refused.status == 400)
        // The job's log, whole, by its last lines, and by byte range.
        let afterID = try #require(after["id"] as? Int)
        let whole = try await HTTPTestClient.send("GET", "\(kiln.url)/api/v1/jobs/\(afterID)/log")
        let lines = whole.body.split(separator: "\n", omittingEmptySubsequences: false)
        #expect(whole.status == 200 && lines.count > 3)
        let tail = try await HTTPTestClient.send("GET", "\(kiln.url)/api/v1/jobs/\(afterID)/log?tail=2")
        #expect(tail.status == 200 && tail.body == lines.suffix(3).joined(separator: "\n"))
        let head = try await HTTPTestClient.send("GET", "\(kiln.url)/api/v1/jobs/\(afterID)/log", headers: [("Range", "bytes=0-9")])
        #expect(head.status == 206 && head.body == String(whole.body.utf8.prefix(10))!)
        let beyond = try await HTTPTestClient.send(
            "GET", "\(kiln.url)/api/v1/jobs/\(afterID)/log", headers: [("Range", "bytes=\(whole.body.utf8.count)-")])
        #expect(beyond.status == 416)
        #expect(try await HTTPTestClient.send("GET", "\(kiln.url)/api/v1/jobs/\(afterID)/log?tail=0").status == 400)

        // Only docs change: paths-ignore skips the build silently.
        try world.repository.write("docs/readme.md", "words")
        let docsOnly = try world.repository.commit("docs")
        let skipped = try #require(try await kiln.push(repository: World.name, sha: docsOnly, before: first, secret: World.secret).json["build_id"] as? Int)
        let ended = try await eventually("the docs build to end", within: .seconds(60)) { () -> [String: Any]? in
            let build = try await kiln.build(skipped)
            return ["queued", "planning"].contains(build["state"] as? String) ? nil : build
        }
        #expect(ended["state"] as? String == "skipped")
        #expect(ended["summary"] as? String == "every changed file matches on.push.paths-ignore (docs/**)")

        // [skip ci] in the message: one final status that says so, and nothing built.
        try world.repository.write("flake.nix", (try String(contentsOfFile: world.repository.path + "/flake.nix", encoding: .utf8)) + "\n")
        let skip = try world.repository.commit("tweak [skip ci]")
        _ = try await kiln.push(repository: World.name, sha: skip, before: docsOnly, secret: World.secret)
        try await eventually("the skip status", within: .seconds(60)) { world.github.statuses.contains { $0.sha == skip } }
        #expect(world.github.statuses.filter { $0.sha == skip }.map { "\($0.context) \($0.state) \($0.description)" }
            == ["kiln success skipped: the commit message says [skip ci]"])
    }
}

@Suite(.enabled(if: NixTest.enabled, "nix is not installed (set KILN_REQUIRE_NIX to make this a failure)"))
struct RestartTests {
    /// Shutting down mid-job stops nix and its builder; the job runs again at the next start
    /// and its statuses end final, with no second pending.
    @Test(.timeLimit(.minutes(3))) func interruptedJobRunsAgainAfterRestart() async throws {
        let world = try await World.make()
        defer { Task { await world.close() } }
        let marker = String(UInt64.random(in: 1_000_000_000...9_999_999_999))
        // Long enough to outlast the shutdown: the worker hears of it only after the HTTP server
        // has stopped, on two loaded cores once more than 3 s after the builder started, and a
        // job that ends first is not interrupted (attempt 1, not 2).
        try TestFlake(packages: ["slow\(marker)": "echo started-\(marker); $bb sleep 20; $bb mkdir $out"])
            .write(to: world.repository.path)
        try world.repository.write(".kiln.yml", "jobs:\n  slow:\n    build: .#slow\(marker)\n")
        let sha = try world.repository.commit("a slow job")
        let first = try await KilnInstance.start(config: world.configPath)
        let accepted = try await first.push(repository: World.name, sha: sha, secret: World.secret)
        let buildID = try #require(accepted.json["build_id"] as? Int)
        try await eventually("the builder to run", within: .seconds(60)) { !Processes.matching("started-\(marker)").isEmpty }
        await first.stop()
        #expect(Processes.matching(marker).isEmpty, "nix or its builder outlived the shutdown")

        let second = try await KilnInstance.start(config: world.configPath)
        defer { Task { await second.stop() } }
        // One batch posts its statuses side by side: the aggregate may land before the job's.
        try await eventually("the build to finish after the restart", within: .seconds(60)) {
            world.github.states("kiln").count == 2 && world.github.states("kiln/slow").count == 2
        }
        #expect(world.github.states("kiln") == ["pending", "success"])
        #expect(world.github.states("kiln/slow") == ["pending", "success"])
        let job = try #require(((try await second.build(buildID))["jobs"] as? [[String: Any]])?.first)
        #expect(job["attempt"] as? Int == 2)
        #expect(job["state"] as? String == "succeeded")
    }
}

@Suite struct StatusDeliveryTests {
    /// The forge answers 500 twice, then 201; Kiln restarts between the failure and the retry.
    @Test(.timeLimit(.minutes(2))) func statusSurvivesFailuresAndARestart() async throws {
        let world = try await World.make()
        defer { Task { await world.close() } }
        try world.repository.write(".kiln.yml", "jobs: {}\n")
        let sha = try world.repository.commit("empty jobs: one final status")
        // Retry-After: 10 s, far longer than the first Kiln's shutdown takes on a loaded machine
        // (about 2 s in a full test run): it makes no second attempt, recorded or not, before it stops.
        world.github.failNext([(500, 10), (500, nil)])
        let first = try await KilnInstance.start(config: world.configPath)
        let accepted = try await first.push(repository: World.name, sha: sha, secret: World.secret)
        #expect(accepted.status == 202)
        let firstBuild = try #require(accepted.json["build_id"] as? Int)
        // Recorded, not only sent: Kiln notes the forge's answer a moment after the forge has it.
        try await eventually("the first, failing attempt to be recorded", within: .seconds(60)) {
            ((try await first.build(firstBuild))["statuses"] as? [[String: Any]])?.first?["attempts"] as? Int == 1
        }
        await first.stop()
        #expect(world.github.statuses.isEmpty)

        let second = try await KilnInstance.start(config: world.configPath)
        defer { Task { await second.stop() } }
        try await eventually("the status to arrive after the restart", within: .seconds(60)) {
            !world.github.statuses.isEmpty
        }
        #expect(world.github.attempts == 3)
        #expect(world.github.statuses.map(\.context) == ["kiln"])
        #expect(world.github.statuses.first?.state == "failure")
        let buildID = try #require(accepted.json["build_id"] as? Int)
        // Kiln records the delivery once the forge has answered: a moment after the forge has it.
        try await eventually("the delivery to be recorded", within: .seconds(10)) {
            ((try await second.build(buildID))["statuses"] as? [[String: Any]])?.first?["delivery"] as? String == "delivered"
        }
        let entry = try #require(((try await second.build(buildID))["statuses"] as? [[String: Any]])?.first)
        #expect(entry["attempts"] as? Int == 3)
    }
}
