import Foundation
import KilnTesting
import Testing

/// Three `kiln serve` processes on one PostgreSQL database, each with its own data directory:
/// thirty pushes over six branches arrive at any of them, one is killed with SIGKILL while it
/// builds, and the other two finish everything: the dead one's job is taken over once its lease
/// lapses, every branch's newest commit builds, and each commit gets its final status once.
@Suite(.enabled(if: NixTest.enabled, "nix is not installed (set KILN_REQUIRE_NIX to make this a failure)"))
struct MultiInstanceTests {
    @Test(.timeLimit(.minutes(5))) func threeInstancesShareTheWorkAndTakeOverADeadOnesJob() async throws {
        let server = try await PostgresServer.shared()
        let database = try await server.newDatabase()
        let world = try await World.make()
        defer { Task { await world.close() } }
        let marker = String(UInt64.random(in: 1_000_000_000...9_999_999_999))
        // Each commit its own derivation: a job that builds for a few seconds.
        func flake(_ name: String) -> TestFlake {
            TestFlake(packages: ["slow": "echo \(marker)-\(name); $bb sleep 4; $bb mkdir $out; echo \(name) > $out/x"])
        }
        try flake("base").write(to: world.repository.path)
        try world.repository.write(".kiln.yml", "jobs:\n  slow:\n    build: .#slow\n")
        _ = try world.repository.commit("base")

        // Three instances, each its own data directory and port, one database.
        let template = try String(contentsOfFile: world.configPath, encoding: .utf8)
        var processes: [Process] = []
        var ports: [Int] = []
        for index in 0..<3 {
            let port = try KilnProcess.freePort()
            let config = template.replacingOccurrences(of: "listen: 127.0.0.1:0", with: "listen: 127.0.0.1:\(port)")
                .replacingOccurrences(of: "max-parallel-jobs: 2", with: "max-parallel-jobs: 1")
                .replacingOccurrences(
                    of: "  data-dir: data\n",
                    with: "  data-dir: data\(index)\n  logs-dir: shared-logs\n  database: \"postgres://postgres@127.0.0.1:\(server.port)/\(database)\"\n")
            let path = world.directory.appending("kiln\(index).yaml")
            try config.write(toFile: path, atomically: true, encoding: .utf8)
            processes.append(try await KilnProcess.serve(config: path, port: port))
            ports.append(port)
        }
        let firstInstance = try #require(try await HTTPTestClient.send("GET", "http://127.0.0.1:\(ports[0])/health").json["instance"] as? String)
        defer { for process in processes where process.isRunning { kill(process.processIdentifier, SIGKILL) } }

        // Thirty pushes: five rounds over six branches, round-robin to the three instances, so
        // that a push to one instance supersedes a build another plans or runs.
        var commits: [String] = []
        var newest: [Int: String] = [:]
        for round in 0..<5 {
            for branch in 0..<6 {
                let index = round * 6 + branch
                try world.repository.git(["checkout", "--quiet"] + (round == 0 ? ["-B", "b\(branch)", "main"] : ["b\(branch)"]))
                try flake("b\(branch)-\(round)").write(to: world.repository.path)
                let sha = try world.repository.commit("round \(round) of b\(branch)")
                commits.append(sha)
                newest[branch] = sha
                let body = Payloads.githubPush(repository: World.name, ref: "refs/heads/b\(branch)", sha: sha)
                let answer = try await HTTPTestClient.send(
                    "POST", "http://127.0.0.1:\(ports[index % 3])/webhooks/github",
                    headers: WebhookSigner.githubHeaders(event: "push", body: body, secret: World.secret, delivery: UUID().uuidString),
                    body: body)
                #expect(answer.status == 202, "\(answer.body)")
            }
        }

        // Instance 0 dies while one of its jobs runs (each job names its instance).
        let api = "http://127.0.0.1:\(ports[1])/api/v1"
        var victim: Int?
        try await eventually("instance 0 to run a job", within: .seconds(90)) {
            let logs = (try? FileManager.default.contentsOfDirectory(atPath: world.directory.appending("shared-logs"))) ?? []
            for name in logs where name.hasSuffix(".log") {
                guard let id = Int(name.dropLast(4)),
                    let job = try? await HTTPTestClient.send("GET", "\(api)/jobs/\(id)").json,
                    job["state"] as? String == "running", job["instance"] as? String == firstInstance
                else { continue }
                victim = id
                return true
            }
            return false
        }
        kill(processes[0].processIdentifier, SIGKILL)
        processes[0].waitUntilExit()
        let job = try #require(victim)

        // The others finish everything: the newest commit of each branch builds; what it
        // superseded ends cancelled; the victim's job runs again once its lease lapsed (or ends
        // cancelled, when a newer push superseded its build meanwhile).
        let final = ["succeeded", "failed", "errored", "cancelled", "skipped"]
        try await eventually("every build to end", within: .seconds(240)) {
            let builds = (try? await HTTPTestClient.send("GET", "\(api)/builds?limit=50").json["builds"] as? [[String: Any]]) ?? []
            return builds.count == 30 && builds.allSatisfy { final.contains($0["state"] as? String ?? "") }
        }
        let builds = try await HTTPTestClient.send("GET", "\(api)/builds?limit=50").json["builds"] as? [[String: Any]] ?? []
        #expect(
            builds.allSatisfy { ["succeeded", "cancelled", "skipped"].contains($0["state"] as? String ?? "") },
            "\(builds.map { ($0["id"] ?? "", $0["state"] ?? "", $0["summary"] ?? "") })")
        for sha in newest.values {
            #expect(builds.first { $0["sha"] as? String == sha }?["state"] as? String == "succeeded", "newest commit \(sha.prefix(7))")
        }
        let taken = try await HTTPTestClient.send("GET", "\(api)/jobs/\(job)").json
        if taken["state"] as? String == "succeeded" {
            #expect(taken["attempt"] as? Int == 2, "the dead instance's job ran again: \(taken)")
        } else {
            #expect(taken["state"] as? String == "cancelled", "\(taken)")
        }
        var attempts: [Int] = []
        for build in builds {
            let jobs = try await HTTPTestClient.send("GET", "\(api)/builds/\(build["id"] as? Int ?? 0)").json["jobs"] as? [[String: Any]] ?? []
            attempts += jobs.map { $0["attempt"] as? Int ?? 0 }
        }
        #expect(attempts.allSatisfy { $0 <= 2 }, "no job ran more than twice: \(attempts)")
        // One logs directory: an instance shows the log of a job another instance ran.
        let third = try #require(try await HTTPTestClient.send("GET", "http://127.0.0.1:\(ports[2])/health").json["instance"] as? String)
        var elsewhere: Int?
        for build in builds where build["state"] as? String == "succeeded" {
            let jobs = try await HTTPTestClient.send("GET", "\(api)/builds/\(build["id"] as? Int ?? 0)").json["jobs"] as? [[String: Any]] ?? []
            if let ran = jobs.first(where: { $0["instance"] as? String != third && $0["state"] as? String == "succeeded" }) {
                elsewhere = ran["id"] as? Int
                break
            }
        }
        let shown = try #require(elsewhere, "a job another instance ran")
        let log = try await HTTPTestClient.send("GET", "http://127.0.0.1:\(ports[2])/api/v1/jobs/\(shown)/log").body
        #expect(log.contains("-slow.drv") && log.contains(marker), "\(log.prefix(300))")
        // Every commit's `kiln` status ends final, posted once, whatever the number of instances.
        try await eventually("every commit's final status", within: .seconds(60)) {
            commits.allSatisfy { ["success", "error"].contains(world.github.states("kiln", sha: $0).last ?? "") }
        }
        // A post under way when its instance died is posted again by another once its claim
        // lapses (the forge may have taken it or not): at most twice, and the same.
        for sha in commits {
            let finals = world.github.statuses.filter { $0.sha == sha && $0.context == "kiln" && $0.state != "pending" }
            #expect(
                finals.count == 1 || (finals.count == 2 && Set(finals.map { "\($0.state) \($0.description)" }).count == 1),
                "commit \(sha.prefix(7)): \(finals.map(\.state)) final statuses")
        }
        for sha in newest.values { #expect(world.github.states("kiln", sha: sha).last == "success") }
        #expect(world.github.refusals.isEmpty, "\(world.github.refusals)")
    }
}
