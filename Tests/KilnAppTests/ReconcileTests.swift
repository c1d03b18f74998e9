import Foundation
import KilnTesting
import Testing

/// The reconciler against each forge's strict fake: heads whose webhooks never arrived are
/// built by the next pass, once, and marked as reconciled.
@Suite(.enabled(if: NixTest.enabled, "nix is not installed (set KILN_REQUIRE_NIX to make this a failure)"))
struct ReconcileTests {
    @Test(.timeLimit(.minutes(4)), arguments: FakeForge.Kind.allCases)
    func missedWebhooksAreBuiltOnceByTheNextReconcile(kind: FakeForge.Kind) async throws {
        let world = try await ForgeWorld.make(kind, extraConfig: "reconcile: {interval: 1s}")
        defer { Task { await world.close() } }
        let marker = String(UInt64.random(in: 1_000_000_000...9_999_999_999))
        try TestFlake(packages: ["a": TestFlake.succeeding("reconciled-\(marker)")]).write(to: world.origin.path)
        try world.origin.write(".kiln.yml", "on:\n  push: {branches: [main]}\n  pull_request: {}\njobs:\n  a:\n    build: .#a\n")
        let first = try world.origin.commit("first")
        try world.origin.branch("other")
        try world.origin.write("other.txt", "other")
        let other = try world.origin.commit("a branch the pipeline does not build")
        try world.origin.git(["checkout", "--quiet", "main"])
        world.forge.setHeads(world.repository, .init(defaultBranch: "main", branches: [("main", first), ("other", other)]))
        let words = world.words
        let kiln = try await KilnInstance.start(config: world.configPath)
        defer { Task { await kiln.stop() } }

        // 1. No builds yet: only the default branch.
        try await eventually("the default branch's build", within: .seconds(90)) { world.states("kiln", first).last == words.success }
        var builds = try await self.builds(kiln)
        #expect(builds.map { $0["sha"] as? String } == [first])
        #expect(builds.first?["trigger"] as? String == "reconciled push")

        // 2. A push to main and a pull request, neither announced by a webhook.
        try world.origin.write("main.txt", "second")
        let second = try world.origin.commit("second, its webhook lost")
        try world.origin.branch("feature")
        try world.origin.write("feature.txt", "feature")
        let head = try world.origin.commit("a pull request whose webhook was lost")
        try world.origin.git(["checkout", "--quiet", "main"])
        if let ref = ForgePayloads.pullRequestRef(kind, number: 7) { try world.origin.git(["update-ref", ref, head]) }
        world.forge.setHeads(
            world.repository,
            .init(
                defaultBranch: "main", branches: [("main", second), ("other", other), ("feature", head)],
                pullRequests: [.init(number: 7, head: head, branch: "feature", base: "main")]))
        try await eventually("the missed push and pull request to be built", within: .seconds(90)) {
            world.states("kiln", second).last == words.success && world.states("kiln", head).last == words.success
        }

        // 3. Later passes build nothing again, and never the branch the pipeline leaves out.
        let passes = try await self.passes(kiln, kind)
        try await eventually("three more reconcile passes", within: .seconds(30)) { (try? await self.passes(kiln, kind)) ?? 0 >= passes + 3 }
        builds = try await self.builds(kiln)
        #expect(builds.count == 3, "\(builds.map { ($0["sha"] as? String ?? "", $0["trigger"] as? String ?? "") })")
        #expect(Set(builds.compactMap { $0["trigger"] as? String }) == ["reconciled push", "reconciled pull request #7"])
        #expect(!builds.contains { $0["sha"] as? String == other })
        #expect(world.forge.refusals.isEmpty, "\(world.forge.refusals)")
        #expect(world.forge.statuses.allSatisfy { [first, second, head].contains($0.sha) })
    }

    private func builds(_ kiln: KilnInstance) async throws -> [[String: Any]] {
        try await HTTPTestClient.send("GET", "\(kiln.url)/api/v1/builds").json["builds"] as? [[String: Any]] ?? []
    }

    /// Successful reconcile passes so far, from `/metrics`.
    private func passes(_ kiln: KilnInstance, _ kind: FakeForge.Kind) async throws -> Int {
        let text = try await HTTPTestClient.send("GET", "\(kiln.url)/metrics").body
        let line = text.split(separator: "\n").first {
            $0.hasPrefix("kiln_reconcile_passes_total{") && $0.contains("outcome=\"ok\"") && $0.contains("forge=\"\(kind.rawValue)\"")
        }
        return line.flatMap { $0.split(separator: " ").last }.flatMap { Int(Double($0) ?? 0) } ?? 0
    }
}
