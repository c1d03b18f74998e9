import Foundation
import KilnTesting
import Testing

/// `kiln serve` on PostgreSQL instead of SQLite: a push is built and reported, and what it
/// recorded is there after a restart.
@Suite(.enabled(if: NixTest.enabled, "nix is not installed (set KILN_REQUIRE_NIX to make this a failure)"))
struct PostgresEndToEndTests {
    @Test(.timeLimit(.minutes(3))) func aPushIsBuiltAndRecordedInPostgreSQL() async throws {
        let server = try await PostgresServer.shared()
        let database = try await server.newDatabase()
        let world = try await ForgeWorld.make(.github, database: "postgres://postgres@127.0.0.1:\(server.port)/\(database)")
        defer { Task { await world.close() } }
        let marker = String(UInt64.random(in: 1_000_000_000...9_999_999_999))
        try TestFlake(packages: ["a": TestFlake.succeeding("pg-\(marker)")]).write(to: world.origin.path)
        try world.origin.write(".kiln.yml", "jobs:\n  a:\n    build: .#a\n")
        let first = try world.origin.commit("first")
        let kiln = try await KilnInstance.start(config: world.configPath)

        let pushed = try await world.send(kiln, ForgePayloads.push(.github, repository: world.repository, branch: "main", sha: first, before: nil))
        #expect(pushed.status == 202, "\(pushed.body)")
        try await eventually("the push's final statuses", within: .seconds(90)) {
            world.states("kiln", first) == ["pending", "success"] && world.states("kiln/a", first) == ["pending", "success"]
        }
        // The database is PostgreSQL's: no SQLite file was made.
        #expect(!FileManager.default.fileExists(atPath: world.directory.appending("data/kiln.sqlite")))
        await kiln.stop()

        let again = try await KilnInstance.start(config: world.configPath)
        defer { Task { await again.stop() } }
        let builds = try await HTTPTestClient.send("GET", "\(again.url)/api/v1/builds").json["builds"] as? [[String: Any]] ?? []
        #expect(builds.map { $0["sha"] as? String } == [first])
        #expect(builds.first?["state"] as? String == "succeeded")
        let redelivered = try await world.send(
            again, ForgePayloads.push(.github, repository: world.repository, branch: "main", sha: first, before: nil))
        #expect(redelivered.status == 202)
        let id = try #require(builds.first?["id"] as? Int)
        let jobs = try await again.build(id)["jobs"] as? [[String: Any]] ?? []
        #expect(jobs.map { $0["state"] as? String } == ["succeeded"])
        #expect(world.forge.refusals.isEmpty, "\(world.forge.refusals)")
    }
}
