import Foundation
import KilnTesting
import Testing

/// Through `kiln serve`: a build's jobs are evaluated once, a job's evaluation error is its own,
/// and a re-run of the same tree uses the derivations already evaluated.
@Suite(.enabled(if: NixTest.enabled, "nix is not installed (set KILN_REQUIRE_NIX to make this a failure)"))
struct EvaluateOnceTests {
    @Test(.timeLimit(.minutes(3))) func aBuildIsEvaluatedOnceAndARerunNotAgain() async throws {
        let world = try await ForgeWorld.make(.gitea)
        defer { Task { await world.close() } }
        let marker = String(UInt64.random(in: 1_000_000_000...9_999_999_999))
        try TestFlake(packages: [:]).write(to: world.origin.path)
        try world.origin.write(
            "flake.nix",
            """
            {
              outputs = { self }: let
                bb = "${./bin}/busybox";
                shared = builtins.trace "shared-value-\(marker)" "\(marker)";
                mk = name: derivation {
                  name = name + "-" + shared;
                  system = "x86_64-linux";
                  builder = bb;
                  args = [ "sh" "-c" (bb + " mkdir $out") ];
                };
              in { packages.x86_64-linux = { a = mk "a"; b = mk "b"; c = mk "c"; }; };
            }
            """)
        try world.origin.write("broken.nix", "throw \"broken-\(marker)\"\n")
        try world.origin.write(
            ".kiln.yml",
            """
            jobs:
              a: { build: .#a }
              b: { build: .#b }
              c: { build: .#c }
              broken: { file: broken.nix }
            """)
        let sha = try world.origin.commit("four jobs, one broken")
        let kiln = try await KilnInstance.start(config: world.configPath)
        defer { Task { await kiln.stop() } }

        let pushed = try await world.send(kiln, ForgePayloads.push(.gitea, repository: world.repository, branch: "main", sha: sha, before: nil))
        let first = try #require(pushed.json["build_id"] as? Int)
        let build = try await finished(first, kiln)
        #expect(build.state == "failed")
        #expect(build.jobs == ["a": "succeeded", "b": "succeeded", "c": "succeeded", "broken": "failed"])
        #expect(build.summaries["broken"]?.contains("broken-\(marker)") == true, "\(build.summaries)")
        // One evaluation for the three flake jobs: the shared value was evaluated once in all.
        #expect(build.logs.values.joined().components(separatedBy: "shared-value-\(marker)").count - 1 == 1, "\(build.logs)")
        #expect(build.logs["broken"]?.contains("broken-\(marker)") == true)
        #expect(build.built == ["a": 1, "b": 1, "c": 1, "broken": 0])
        #expect(!(build.logs["a"]?.contains("broken-\(marker)") ?? true))
        let phases = build.statuses.filter { $0.context == "kiln" }.map(\.description)
        #expect(phases.contains("evaluating 4 jobs") && phases.contains("building 4 jobs"), "\(phases)")

        // The re-run evaluates nothing: the recorded derivations are still in the store.
        let admin = [("Authorization", "Bearer \(ForgeWorld.admin)")]
        let rerun = try await HTTPTestClient.send("POST", "\(kiln.url)/api/v1/builds/\(first)/rerun", headers: admin)
        #expect(rerun.status == 202, "\(rerun.body)")
        let second = try #require(Int((rerun.json["url"] as? String ?? "").split(separator: "/").last ?? ""))
        let again = try await finished(second, kiln)
        // The broken job recorded no derivations, so the build is evaluated again, and fails the same way.
        #expect(again.jobs == build.jobs)
        #expect(again.logs.values.joined().contains("shared-value-\(marker)"))

        // A re-run of a build whose every job has derivations evaluates nothing.
        try world.origin.write(".kiln.yml", "jobs:\n  a: { build: .#a }\n  b: { build: .#b }\n")
        let fixed = try world.origin.commit("only the good jobs")
        let good = try await world.send(kiln, ForgePayloads.push(.gitea, repository: world.repository, branch: "main", sha: fixed, before: sha))
        let third = try await finished(try #require(good.json["build_id"] as? Int), kiln)
        #expect(third.jobs == ["a": "succeeded", "b": "succeeded"])
        let rerunGood = try await HTTPTestClient.send(
            "POST", "\(kiln.url)/api/v1/builds/\(try #require(good.json["build_id"] as? Int))/rerun", headers: admin)
        let fourth = try await finished(try #require(Int((rerunGood.json["url"] as? String ?? "").split(separator: "/").last ?? "")), kiln)
        #expect(fourth.jobs == ["a": "succeeded", "b": "succeeded"])
        #expect(!fourth.logs.values.joined().contains("shared-value-\(marker)"), "\(fourth.logs)")
        #expect(fourth.logs.values.joined().contains("are still in the store: not evaluating again"), "\(fourth.logs)")
        // Nothing was built again either.
        #expect(fourth.logs.values.allSatisfy { $0.contains("nothing to build") }, "\(fourth.logs)")
        #expect(fourth.built == ["a": 0, "b": 0])
        #expect(world.forge.refusals.isEmpty, "\(world.forge.refusals)")
    }

    struct Finished {
        var state: String
        var jobs: [String: String]
        var summaries: [String: String]
        var logs: [String: String]
        /// How many derivations each job built itself.
        var built: [String: Int]
        var statuses: [(context: String, description: String)]
    }

    /// The build once it has ended, with its jobs' states, summaries and logs.
    func finished(_ id: Int, _ kiln: KilnInstance) async throws -> Finished {
        try await eventually("build \(id) to end", within: .seconds(120)) {
            let state = (try? await kiln.build(id))?["state"] as? String
            return state != nil && !["queued", "planning", "running"].contains(state!)
        }
        let build = try await kiln.build(id)
        let jobs = try #require(build["jobs"] as? [[String: Any]])
        var logs: [String: String] = [:]
        for job in jobs {
            let name = try #require(job["name"] as? String)
            let url = try #require(job["log_url"] as? String).replacingOccurrences(of: "http://kiln.test", with: kiln.url)
            logs[name] = try await HTTPTestClient.send("GET", url).body
        }
        let statuses = (build["statuses"] as? [[String: Any]] ?? []).map {
            (context: $0["context"] as? String ?? "", description: $0["description"] as? String ?? "")
        }
        return Finished(
            state: build["state"] as? String ?? "",
            jobs: Dictionary(uniqueKeysWithValues: jobs.map { ($0["name"] as! String, $0["state"] as! String) }),
            summaries: Dictionary(uniqueKeysWithValues: jobs.map { ($0["name"] as! String, $0["summary"] as? String ?? "") }),
            logs: logs,
            built: Dictionary(uniqueKeysWithValues: jobs.map { ($0["name"] as! String, ($0["built_derivations"] as? [String])?.count ?? -1) }),
            statuses: statuses)
    }
}
