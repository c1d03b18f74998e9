import Foundation
import KilnApp
import KilnCore
import KilnTesting
import Logging
import Testing

/// How `kiln serve` behaves when something around it is wrong.
@Suite struct OperationsTests {
    @Test(.timeLimit(.minutes(1))) func aSecondKilnOnTheSameDataDirectoryIsRefused() async throws {
        let world = try await World.make()
        defer { Task { await world.close() } }
        let first = try await KilnInstance.start(config: world.configPath)
        do {
            _ = try await KilnInstance.start(config: world.configPath)
            Issue.record("a second kiln started on the same data directory")
        } catch let error as DataDirectoryLock.Busy {
            #expect(error.message.hasPrefix("another kiln serve is using "))
            #expect(error.message.hasSuffix("stop it first, or give this one its own storage.data-dir"))
        }
        await first.stop()
        // Once the first has stopped, the directory is free again.
        let again = try await KilnInstance.start(config: world.configPath)
        await again.stop()
    }

    @Test(.timeLimit(.minutes(1))) func withoutAUsableNixKilnKeepsServingAndRecordsDeliveries() async throws {
        let world = try await World.make()
        defer { Task { await world.close() } }
        let config = try String(contentsOfFile: world.configPath, encoding: .utf8)
            .replacingOccurrences(of: "nix:\n", with: "nix:\n  binary: /nonexistent/nix\n")
        try config.write(toFile: world.configPath, atomically: true, encoding: .utf8)
        try world.repository.write(".kiln.yml", "jobs: {}\n")
        let sha = try world.repository.commit("nothing to build")
        let kiln = try await KilnInstance.start(config: world.configPath)
        defer { Task { await kiln.stop() } }
        try await eventually("/health to say why", within: .seconds(30)) {
            let health = try await HTTPTestClient.send("GET", "\(kiln.url)/health")
            return health.status == 503 && (health.json["nix"] as? String)?.contains("/nonexistent/nix is not an executable file") == true
        }
        let accepted = try await kiln.push(repository: World.name, sha: sha, secret: World.secret)
        #expect(accepted.status == 202)
        let buildID = try #require(accepted.json["build_id"] as? Int)
        #expect((try await kiln.build(buildID))["state"] as? String == "queued")
    }
}
