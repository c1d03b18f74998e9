import Foundation
import KilnTesting
import Testing

/// Three `kiln serve` processes on one PostgreSQL database, each with its own data directory:
/// pushes arrive at any of them, one is killed with SIGKILL while it builds, and the other two
/// finish everything: the dead one's job is taken over once its lease lapses, every build ends
/// succeeded, and each commit gets its final status once.
@Suite(.enabled(if: NixTest.enabled, "nix is not installed (set KILN_REQUIRE_NIX to make this a failure)"))
struct MultiInstanceTests {
    @Test(.timeLimit(.minutes(5))) func threeInstancesShareTheWorkAndTakeOverADeadOnesJob() async throws {
        let server = try await PostgresServer.shared()
        let database = try server.newDatabase()
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
                .replacingOccurrences(
                    of: "  data-dir: data\n",
                    with: "  data-dir: data\(index)\n  database: \"postgres://postgres@127.0.0.1:\(server.port)/\(database)\"\n")
            let path = world.directory.appending("kiln\(index).yaml")
            try config.write(toFile: path, atomically: true, encoding: .utf8)
            processes.append(try await KilnProcess.serve(config: path, port: port))
            ports.append(port)
        }
        defer { for process in processes where process.isRunning { kill(process.processIdentifier, SIGKILL) } }

        // Twelve branches, one commit each, pushed round-robin to the three.
        var commits: [String] = []
        for index in 0..<12 {
            try world.repository.git(["checkout", "--quiet", "-B", "b\(index)", "main"])
            try flake("b\(index)").write(to: world.repository.path)
            let sha = try world.repository.commit("commit \(index)")
            commits.append(sha)
            let body = Payloads.githubPush(repository: World.name, ref: "refs/heads/b\(index)", sha: sha)
            let answer = try await HTTPTestClient.send(
                "POST", "http://127.0.0.1:\(ports[index % 3])/webhooks/github",
                headers: WebhookSigner.githubHeaders(event: "push", body: body, secret: World.secret, delivery: UUID().uuidString),
                body: body)
            #expect(answer.status == 202, "\(answer.body)")
        }

        // Instance 0 dies while one of its jobs runs (its log is in its own data directory).
        let api = "http://127.0.0.1:\(ports[1])/api/v1"
        var victim: Int?
        try await eventually("instance 0 to run a job", within: .seconds(90)) {
            let logs = (try? FileManager.default.contentsOfDirectory(atPath: world.directory.appending("data0/logs"))) ?? []
            for name in logs where name.hasSuffix(".log") {
                guard let id = Int(name.dropLast(4)),
                    let job = try? await HTTPTestClient.send("GET", "\(api)/jobs/\(id)").json,
                    job["state"] as? String == "running"
                else { continue }
                victim = id
                return true
            }
            return false
        }
        kill(processes[0].processIdentifier, SIGKILL)
        processes[0].waitUntilExit()
        let job = try #require(victim)

        // The others finish everything; the victim's job runs again, once its lease lapsed.
        try await eventually("every build to end", within: .seconds(180)) {
            let builds = (try? await HTTPTestClient.send("GET", "\(api)/builds?limit=50").json["builds"] as? [[String: Any]]) ?? []
            return builds.count == 12 && builds.allSatisfy { ["succeeded", "failed", "errored", "cancelled"].contains($0["state"] as? String ?? "") }
        }
        let builds = try await HTTPTestClient.send("GET", "\(api)/builds?limit=50").json["builds"] as? [[String: Any]] ?? []
        #expect(
            builds.allSatisfy { $0["state"] as? String == "succeeded" },
            "\(builds.map { ($0["id"] ?? "", $0["state"] ?? "", $0["summary"] ?? "") })")
        let taken = try await HTTPTestClient.send("GET", "\(api)/jobs/\(job)").json
        #expect(taken["state"] as? String == "succeeded")
        #expect(taken["attempt"] as? Int == 2, "the dead instance's job ran again: \(taken)")
        try await eventually("every commit's final status", within: .seconds(60)) {
            commits.allSatisfy { world.github.states("kiln", sha: $0).last == "success" }
        }
        // Posted once per change, whatever the number of instances.
        for sha in commits {
            let finals = world.github.statuses.filter { $0.sha == sha && $0.context == "kiln" && $0.state == "success" }
            #expect(finals.count == 1, "commit \(sha.prefix(7)): \(finals.count) final statuses")
        }
        #expect(world.github.refusals.isEmpty, "\(world.github.refusals)")
    }
}
