import Foundation
import KilnApp
import KilnTesting
import Logging
import ServiceLifecycle

/// `instances`: Kiln instances on one PostgreSQL 15 database (fsync on), each with its own data
/// directory, on this one machine and its one nix.
/// - builds per minute through one, two and three instances: `builds` pushes (each its own
///   branch and derivation, one trivial job) sent round-robin, timed until every build ended;
/// - the time a surviving instance takes to run again a job whose instance was killed (SIGKILL).
enum InstanceLoad {
    static let secret = "bench-secret"

    static func run(builds: Int) async throws {
        let server = try await PostgresServer.shared(durable: true)
        for count in 1...3 {
            let minute = try await buildsPerMinute(instances: count, builds: builds, server: server)
            print(String(format: "[instances] %d instance%@, %d builds of one trivial job: %.1f builds/min", count, count == 1 ? "" : "s", builds, minute))
        }
        let takeover = try await takeoverSeconds(server: server)
        print(String(format: "[instances] a killed instance's job running again on another: %.1f s after SIGKILL (lease 30 s, renewed every 10 s)", takeover))
    }

    /// A world: an origin repository and a configuration per instance, all on one new database.
    struct World {
        let directory: TemporaryDirectory
        let origin: TestGitRepository
        let database: String

        init(server: PostgresServer) async throws {
            directory = try TemporaryDirectory("kiln-bench-instances")
            origin = try TestGitRepository(at: directory.appending("origin"))
            database = "postgres://postgres@127.0.0.1:\(server.port)/\(try await server.newDatabase())"
            try InstanceLoad.secret.write(toFile: directory.appending("secret"), atomically: true, encoding: .utf8)
            try TestFlake(packages: ["job": TestFlake.succeeding("base")]).write(to: origin.path)
            try origin.write(".kiln.yml", "jobs:\n  job:\n    build: .#job\n")
            _ = try origin.commit("base")
        }

        /// Instance `index`'s configuration file, listening on `port` (0: any).
        func config(_ index: Int, port: Int = 0) throws -> String {
            let path = directory.appending("kiln\(index).yaml")
            try """
                server: {listen: "127.0.0.1:\(port)", public-url: "http://kiln.bench"}
                storage: {data-dir: data\(index), database: "\(database)"}
                nix: {max-parallel-jobs: 2, options: {substituters: ""}}
                reconcile: {interval: "off"}
                forges:
                  github: {type: github, webhook-secret-files: [secret], status-api: none}
                repositories:
                  - {forge: github, name: bench/hello, clone-url: "file://\(origin.path)"}
                """.write(toFile: path, atomically: true, encoding: .utf8)
            return path
        }

        /// A commit on a branch of its own, with a derivation of its own; returns its id.
        func branch(_ name: String, script: String) throws -> String {
            try origin.git(["checkout", "--quiet", "-B", name, "main"])
            try TestFlake(packages: ["job": script]).write(to: origin.path)
            let sha = try origin.commit(name)
            try origin.git(["checkout", "--quiet", "main"])
            return sha
        }

        func push(_ port: Int, branch: String, sha: String) async throws {
            let (event, body) = ForgePayloads.push(.github, repository: "bench/hello", branch: branch, sha: sha, before: nil)
            let answer = try await HTTPTestClient.send(
                "POST", "http://127.0.0.1:\(port)/webhooks/github",
                headers: ForgePayloads.headers(.github, event: event, body: body, secret: InstanceLoad.secret), body: body)
            guard answer.status == 202 else { fatalError("push refused: HTTP \(answer.status): \(answer.body)") }
        }
    }

    static func buildsPerMinute(instances: Int, builds: Int, server: PostgresServer) async throws -> Double {
        let world = try await World(server: server)
        defer { world.directory.remove() }
        let salt = UUID().uuidString.prefix(8)
        let commits = try (0..<builds).map { index in
            ("b\(index)", try world.branch("b\(index)", script: TestFlake.succeeding("\(salt)-\(index)")))
        }
        var running: [(ServiceGroup, Task<Void, any Error>, Int)] = []
        for index in 0..<instances { running.append(try await startKiln(try world.config(index))) }
        let start = ContinuousClock.now
        for (index, commit) in commits.enumerated() {
            try await world.push(running[index % instances].2, branch: commit.0, sha: commit.1)
        }
        let api = "http://127.0.0.1:\(running[0].2)/api/v1/builds?limit=\(builds + 10)"
        while true {
            let listed = (try? await HTTPTestClient.send("GET", api).json["builds"] as? [[String: Any]]) ?? []
            let ended = listed.filter { ["succeeded", "failed", "errored", "cancelled", "skipped"].contains($0["state"] as? String ?? "") }
            if ended.count == builds {
                let failed = ended.filter { $0["state"] as? String != "succeeded" }
                if !failed.isEmpty { print("[instances] warning: \(failed.count) builds did not succeed: \(failed.map { $0["summary"] ?? "" })") }
                break
            }
            try await Task.sleep(for: .milliseconds(200))
        }
        let elapsed = ContinuousClock.now - start
        for (group, task, _) in running {
            await group.triggerGracefulShutdown()
            _ = try? await task.value
        }
        return Double(builds) / (Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18) * 60
    }

    /// Two `kiln serve` processes; a long job runs on the first, which is killed; the time until
    /// the job runs again (attempt 2) on the second.
    static func takeoverSeconds(server: PostgresServer) async throws -> Double {
        let world = try await World(server: server)
        defer { world.directory.remove() }
        let kiln = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("kiln").path
        func serve(_ index: Int) async throws -> (Process, Int) {
            let port = try NginxCache.freePort()
            let process = Process()
            process.executableURL = URL(fileURLWithPath: kiln)
            process.arguments = ["serve", "--config", try world.config(index, port: port)]
            process.standardOutput = FileHandle(forWritingAtPath: "/dev/null")
            process.standardError = FileHandle(forWritingAtPath: "/dev/null")
            try process.run()
            try await eventually("kiln \(index) to answer", within: .seconds(60)) {
                (try? await HTTPTestClient.send("GET", "http://127.0.0.1:\(port)/health")) != nil
            }
            return (process, port)
        }
        let sha = try world.branch("long", script: "echo long-\(UUID().uuidString); $bb sleep 120; $bb mkdir $out")
        let (first, firstPort) = try await serve(0)
        try await world.push(firstPort, branch: "long", sha: sha)
        var job = 0
        try await eventually("the job to run on the first instance", within: .seconds(120)) {
            let build = try? await HTTPTestClient.send("GET", "http://127.0.0.1:\(firstPort)/api/v1/builds/1").json
            guard let jobs = build?["jobs"] as? [[String: Any]], let running = jobs.first, running["state"] as? String == "running" else { return false }
            job = running["id"] as? Int ?? 0
            return true
        }
        let (second, secondPort) = try await serve(1)
        defer { kill(second.processIdentifier, SIGKILL); second.waitUntilExit() }
        kill(first.processIdentifier, SIGKILL)
        first.waitUntilExit()
        let killed = ContinuousClock.now
        try await eventually("the job to run again", within: .seconds(180)) {
            let again = try? await HTTPTestClient.send("GET", "http://127.0.0.1:\(secondPort)/api/v1/jobs/\(job)").json
            return again?["state"] as? String == "running" && again?["attempt"] as? Int == 2
        }
        let waited = ContinuousClock.now - killed
        return Double(waited.components.seconds) + Double(waited.components.attoseconds) / 1e18
    }
}
