import Foundation
import KilnTesting
import Testing

/// `kiln serve` as its own process, killed with SIGKILL in the middle of a build.
@Suite(.enabled(if: NixTest.enabled, "nix is not installed (set KILN_REQUIRE_NIX to make this a failure)"))
struct CrashTests {
    @Test(.timeLimit(.minutes(3))) func nixDiesWithAKilledKilnAndTheJobRunsOnceAfterTheRestart() async throws {
        let world = try await World.make()
        defer { Task { await world.close() } }
        let marker = String(UInt64.random(in: 1_000_000_000...9_999_999_999))
        try TestFlake(packages: ["slow\(marker)": "echo started-\(marker); $bb sleep 8; $bb mkdir $out"]).write(to: world.repository.path)
        try world.repository.write(".kiln.yml", "jobs:\n  slow:\n    build: .#slow\(marker)\n")
        let sha = try world.repository.commit("a slow job")
        let port = try KilnProcess.freePort()
        let first = try await KilnProcess.serve(world, port: port)
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

        let second = try await KilnProcess.serve(world, port: port)
        defer {
            second.terminate()
            second.waitUntilExit()
        }
        try await eventually("the build to finish after the restart", within: .seconds(120)) {
            world.github.states("kiln").count == 2 && world.github.states("kiln/slow").count == 2
        }
        #expect(world.github.states("kiln") == ["pending", "success"])
        #expect(world.github.states("kiln/slow") == ["pending", "success"])
    }
}
