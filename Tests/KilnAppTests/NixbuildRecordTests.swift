import Foundation
import KilnTesting
import Testing

/// Jobs as nixbuild.net's build records, through `kiln serve` with real nix: every field, each
/// filter, and the usage figures.
@Suite(.enabled(if: NixTest.enabled, "nix is not installed (set KILN_REQUIRE_NIX to make this a failure)"))
struct NixbuildRecordTests {
    @Test(.timeLimit(.minutes(3))) func recordsAndFiltersMatchWhatNixBuilt() async throws {
        let world = try await World.make()
        defer { Task { await world.close() } }
        let marker = String(UInt64.random(in: 1_000_000_000...9_999_999_999))
        try TestFlake(packages: [
            // 3 MiB in its build directory, kept long enough for the sampler to see it.
            "ok": "$bb head -c 3145728 /dev/zero > scratch; $bb sleep 1; $bb mkdir $out; echo \(marker) > $out/value",
            "bad": "echo failing-\(marker); exit 1",
        ]).write(to: world.repository.path)
        try world.repository.write(
            ".kiln.yml", "jobs:\n  ok:\n    build: .#ok\n    tags: {team: platform}\n  bad:\n    build: .#bad\n")
        let sha = try world.repository.commit("two jobs")
        let kiln = try await KilnInstance.start(config: world.configPath)
        defer { Task { await kiln.stop() } }
        let started = Date()
        let buildID = try #require(try await kiln.push(repository: World.name, sha: sha, secret: World.secret).json["build_id"] as? Int)
        try await eventually("the build to end", within: .seconds(120)) { (try await kiln.build(buildID))["state"] as? String == "failed" }

        func records(_ query: String = "") async throws -> [[String: Any]] {
            let answer = try await HTTPTestClient.send("GET", "\(kiln.url)/api/v1/nixbuild/builds\(query)")
            try #require(answer.status == 200, "\(answer.body)")
            return try #require(try JSONSerialization.jsonObject(with: Data(answer.body.utf8)) as? [[String: Any]])
        }
        let all = try await records()
        #expect(all.count == 2)
        let ok = try #require(all.first { ($0["tags"] as? [String: String])?["job"] == "ok" })
        #expect(ok["status"] as? String == "built")
        #expect(ok["status_message"] as? String == "")
        #expect(ok["system"] as? String == "x86_64-linux")
        #expect((ok["cpu_count"] as? Int ?? 0) >= 1 && (ok["allocated_megabytes"] as? Int ?? 0) > 0)
        #expect(ok["queue_time_seconds"] as? Double != nil && (ok["duration_seconds"] as? Double ?? 0) >= 1)
        #expect((ok["peak_storage_use_kilobytes"] as? Int ?? 0) >= 3000, "\(ok["peak_storage_use_kilobytes"] ?? "none")")
        #expect((ok["peak_memory_use_kilobytes"] as? Int ?? 0) > 0)
        #expect(ok["tags"] as? [String: String] == ["team": "platform", "repository": World.name, "ref": "refs/heads/main", "job": "ok"])
        let derivation = try #require(ok["derivation_path"] as? String)
        #expect(derivation.hasSuffix("-ok.drv"))
        let output = try #require((ok["outputs"] as? [[String: Any]])?.first)
        let path = try #require(output["path"] as? String)
        let (status, info) = try await Processes.run("/usr/bin/nix", ["path-info", "--extra-experimental-features", "nix-command", "--json", path])
        try #require(status == 0)
        let described = try #require((try JSONSerialization.jsonObject(with: Data(info.utf8)) as? [[String: Any]])?.first)
        #expect(output["nar_hash"] as? String == described["narHash"] as? String)
        #expect(output["nar_size_bytes"] as? Int == described["narSize"] as? Int)
        let bad = try #require(all.first { ($0["tags"] as? [String: String])?["job"] == "bad" })
        #expect(bad["status"] as? String == "failed")
        #expect((bad["status_message"] as? String)?.isEmpty == false)

        // Each filter.
        #expect(try await records("?status=failed").map { ($0["tags"] as? [String: String])?["job"] } == ["bad"])
        #expect(try await records("?status=built,failed").count == 2)
        #expect(try await records("?derivation_path=\(derivation)").map { $0["build_id"] as? Int } == [ok["build_id"] as? Int])
        #expect(try await records("?tags=team:platform").count == 1)
        #expect(try await records("?tags=team:platform,job:bad").isEmpty)
        #expect(try await records("?tags=job:bad").count == 1)
        let iso = ISO8601DateFormatter()
        #expect(try await records("?create_time_from=\(iso.string(from: started.addingTimeInterval(-60)))").count == 2)
        #expect(try await records("?create_time_from=\(iso.string(from: Date().addingTimeInterval(60)))").isEmpty)
        #expect(try await records("?create_time_to=\(iso.string(from: started.addingTimeInterval(-60)))").isEmpty)
        #expect(try await records("?limit=1").count == 1)
        let refused = try await HTTPTestClient.send("GET", "\(kiln.url)/api/v1/nixbuild/builds?status=exploded")
        #expect(refused.status == 400 && (refused.json["error"] as? String)?.hasPrefix("status 'exploded' is not one of") == true)
        #expect(try await HTTPTestClient.send("GET", "\(kiln.url)/api/v1/nixbuild/builds?limit=0").status == 400)

        // Usage: both jobs ran.
        let usage = try await HTTPTestClient.send("GET", "\(kiln.url)/api/v1/nixbuild/usage").json
        #expect(usage["billable_build_count"] as? Int == 2)
        let cpu = all.compactMap { $0["cpu_seconds"] as? Int }.reduce(0, +)
        #expect(usage["billable_cpu_seconds"] as? Int != nil && abs((usage["billable_cpu_seconds"] as? Int ?? -9) - cpu) <= 1)
        let none = try await HTTPTestClient.send("GET", "\(kiln.url)/api/v1/nixbuild/usage?from=\(iso.string(from: Date().addingTimeInterval(60)))").json
        #expect(none["billable_build_count"] as? Int == 0)
    }
}
