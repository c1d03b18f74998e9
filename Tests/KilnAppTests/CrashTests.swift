import Foundation
import KilnTesting
import Testing

/// `kiln serve` as its own process, killed with SIGKILL in the middle of a build.
@Suite(.enabled(if: NixTest.enabled, "nix is not installed (set KILN_REQUIRE_NIX to make this a failure)"))
struct CrashTests {
    static let kiln = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("kiln").path

    /// A port nothing listens on right now.
    static func freePort() throws -> Int {
        let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(descriptor) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(descriptor, $0, length) == 0 && getsockname(descriptor, $0, &length) == 0 }
        }
        return Int(UInt16(bigEndian: address.sin_port))
    }

    /// Starts `kiln serve` on `port` and waits until it answers.
    static func serve(_ world: World, port: Int) async throws -> Process {
        let config = try String(contentsOfFile: world.configPath, encoding: .utf8)
            .replacingOccurrences(of: "listen: 127.0.0.1:0", with: "listen: 127.0.0.1:\(port)")
        try config.write(toFile: world.configPath, atomically: true, encoding: .utf8)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: kiln)
        process.arguments = ["serve", "--config", world.configPath]
        process.standardOutput = FileHandle(forWritingAtPath: "/dev/null")
        process.standardError = FileHandle(forWritingAtPath: "/dev/null")
        try process.run()
        try await eventually("kiln to answer", within: .seconds(60)) {
            (try? await HTTPTestClient.send("GET", "http://127.0.0.1:\(port)/health")) != nil
        }
        return process
    }

    @Test(.timeLimit(.minutes(3))) func nixDiesWithAKilledKilnAndTheJobRunsOnceAfterTheRestart() async throws {
        let world = try await World.make()
        defer { Task { await world.close() } }
        let marker = String(UInt64.random(in: 1_000_000_000...9_999_999_999))
        try TestFlake(packages: ["slow\(marker)": "echo started-\(marker); $bb sleep 3; $bb mkdir $out"]).write(to: world.repository.path)
        try world.repository.write(".kiln.yml", "jobs:\n  slow:\n    build: .#slow\(marker)\n")
        let sha = try world.repository.commit("a slow job")
        let port = try Self.freePort()
        let first = try await Self.serve(world, port: port)
        let body = Payloads.githubPush(repository: World.name, ref: "refs/heads/main", sha: sha)
        let accepted = try await HTTPTestClient.send(
            "POST", "http://127.0.0.1:\(port)/webhooks/github",
            headers: WebhookSigner.githubHeaders(event: "push", body: body, secret: World.secret, delivery: "crash-1"), body: body)
        #expect(accepted.status == 202)
        try await eventually("the builder to run", within: .seconds(60)) { !Processes.matching("started-\(marker)").isEmpty }
        kill(first.processIdentifier, SIGKILL)
        first.waitUntilExit()
        // nix has Kiln's death as its parent-death signal, and its builder dies with it.
        try await eventually("nix and its builder to die with Kiln", within: .seconds(20)) { Processes.matching(marker).isEmpty }

        let second = try await Self.serve(world, port: port)
        defer {
            second.terminate()
            second.waitUntilExit()
        }
        try await eventually("the build to finish after the restart", within: .seconds(60)) { world.github.states("kiln").count == 2 }
        #expect(world.github.states("kiln") == ["pending", "success"])
        #expect(world.github.states("kiln/slow") == ["pending", "success"])
    }
}
