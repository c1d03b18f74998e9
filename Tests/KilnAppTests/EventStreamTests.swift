import Foundation
import KilnTesting
import Testing

/// `/api/v1/events` and the events socket, over real sockets with real nix.
@Suite(.enabled(if: NixTest.enabled, "nix is not installed (set KILN_REQUIRE_NIX to make this a failure)"))
struct EventStreamTests {
    @Test(.timeLimit(.minutes(3))) func aBuildsLifecycleAndPostBuildEventsAreStreamedAndResumed() async throws {
        let world = try await World.make()
        defer { Task { await world.close() } }
        // A short path: Unix socket paths are limited to about 100 bytes.
        let socket = "/tmp/kiln-events-\(UInt32.random(in: 0...UInt32.max)).sock"
        let config = try String(contentsOfFile: world.configPath, encoding: .utf8)
            .replacingOccurrences(of: "server:\n", with: "server:\n  events-socket: \(socket)\n")
        try config.write(toFile: world.configPath, atomically: true, encoding: .utf8)
        let marker = String(UInt64.random(in: 1_000_000_000...9_999_999_999))
        try TestFlake(packages: [
            "ok": TestFlake.succeeding("fine-\(marker)"),
            "bad": "echo doomed-\(marker); exit 1",
        ]).write(to: world.repository.path)
        try world.repository.write(".kiln.yml", "jobs:\n  ok: { build: .#ok }\n  bad: { build: .#bad }\n")
        let sha = try world.repository.commit("one job succeeds, one fails")
        let kiln = try await KilnInstance.start(config: world.configPath)
        defer { Task { await kiln.stop() } }

        let live = EventClient("\(kiln.url)/api/v1/events")
        defer { live.close() }
        let encoded = socket.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? socket
        let nixd = EventClient("http+unix://\(encoded)/events")
        defer { nixd.close() }
        try await eventually("both streams to open", within: .seconds(10)) { live.comments > 0 && nixd.comments > 0 }
        #expect(FileManager.default.fileExists(atPath: socket))
        let mode = try FileManager.default.attributesOfItem(atPath: socket)[.posixPermissions] as? Int
        #expect(mode == 0o660)

        let pushed = try await kiln.push(repository: World.name, sha: sha, secret: World.secret)
        let buildID = try #require(pushed.json["build_id"] as? Int)
        try await eventually("the build's end on the stream", within: .seconds(120)) {
            live.events.contains { $0.type == "build.finished" }
        }
        let events = live.events
        let types = events.compactMap(\.type)
        // Strictly increasing ids, each event once.
        let ids = events.compactMap(\.id)
        #expect(ids.count == events.count && zip(ids, ids.dropFirst()).allSatisfy { $0 < $1 })
        #expect(events.allSatisfy { ($0.json["build_id"] as? Int) == buildID })
        // The lifecycle in order.
        func index(_ type: String) -> Int { types.firstIndex(of: type) ?? -1 }
        #expect(types.first == "build.queued", "\(types)")
        #expect(index("build.queued") < index("build.planned") && index("build.planned") < index("build.started"), "\(types)")
        #expect(types.filter { $0 == "job.queued" }.count == 2 && types.filter { $0 == "job.finished" }.count == 2, "\(types)")
        #expect(index("job.started") > index("build.started"), "\(types)")
        #expect(types.lastIndex(of: "job.finished")! < index("build.finished"), "\(types)")
        #expect(types.lastIndex(of: "built-path")! < types.lastIndex(of: "job.finished")!, "\(types)")
        let finished = events.filter { $0.type == "job.finished" }.map(\.json)
        #expect(Set(finished.compactMap { $0["outcome"] as? String }) == ["succeeded", "failed"])
        let succeeded = try #require(finished.first { $0["outcome"] as? String == "succeeded" })
        #expect(succeeded["duration_seconds"] != nil && succeeded["cpu_seconds"] != nil && succeeded["peak_memory_kilobytes"] != nil)
        #expect((events.first { $0.type == "build.finished" }?.json["state"] as? String) == "failed")

        // One post-build event for what was built, as nix describes it; the failure has its own.
        let built = events.filter { $0.type == "built-path" }.map(\.json)
        #expect(built.count == 1, "\(built)")
        let drv = try #require(built.first?["drv"] as? String)
        #expect(drv.hasSuffix("-ok.drv") || drv.contains("ok"))
        #expect(built.first?["c"] as? String == "BuiltPathResponseEventV1" && built.first?["v"] as? String == "1")
        let outputs = try runCommand("/usr/bin/nix-store", ["--query", "--outputs", drv]).split(separator: "\n").map(String.init)
        #expect(built.first?["outputs"] as? [String] == outputs)
        let valid = try runCommand("/usr/bin/nix", ["path-info", "--extra-experimental-features", "nix-command"] + outputs)
        #expect(valid.split(separator: "\n").map(String.init) == outputs)
        let failures = events.filter { $0.type == "build-failure" }.map(\.json)
        #expect(failures.count == 1 && (failures.first?["drv"] as? String)?.contains("bad") == true, "\(failures)")

        // The socket serves the same post-build events, in Determinate Nixd's shape only.
        try await eventually("the socket's post-build events", within: .seconds(10)) { nixd.events.count == 2 }
        #expect(nixd.events.allSatisfy { $0.id == nil && $0.type == nil })
        #expect(nixd.events.map(\.json).first { $0["c"] as? String == "BuiltPathResponseEventV1" }?["drv"] as? String == drv)
        #expect(nixd.events.allSatisfy { Set($0.json.keys).isSubset(of: ["v", "c", "drv", "outputs"]) })

        // A client that resumes after the third event gets exactly what followed, once each.
        let resumeAfter = try #require(ids.dropFirst(2).first)
        let resumed = EventClient("\(kiln.url)/api/v1/events", headers: [("Last-Event-ID", "\(resumeAfter)")])
        defer { resumed.close() }
        // Statuses may still be posted meanwhile: both streams get those too.
        try await eventually("the resumed stream to hold exactly what followed", within: .seconds(10)) {
            let expected = Array(live.events.compactMap(\.id).drop { $0 <= resumeAfter })
            return resumed.events.compactMap(\.id) == expected && resumed.events.count == expected.count
        }

        // Filters: one type, one build.
        let filtered = EventClient("\(kiln.url)/api/v1/events?types=job.finished&build=\(buildID)", headers: [("Last-Event-ID", "0")])
        defer { filtered.close() }
        try await eventually("the filtered stream", within: .seconds(10)) { filtered.events.count == 2 }
        #expect(filtered.events.allSatisfy { $0.type == "job.finished" })
        let refused = try await HTTPTestClient.send("GET", "\(kiln.url)/api/v1/events?types=nonsense")
        #expect(refused.status == 400 && refused.body.contains("unknown event types nonsense"))

        await kiln.stop()
        #expect(!FileManager.default.fileExists(atPath: socket), "the socket file is removed at shutdown")
    }
}

@Suite struct EventStreamLimitTests {
    @Test(.timeLimit(.minutes(2))) func streamsBeyondTheLimitAreRefusedUntilOneCloses() async throws {
        let world = try await World.make()
        defer { Task { await world.close() } }
        let config = try String(contentsOfFile: world.configPath, encoding: .utf8)
            .replacingOccurrences(of: "server:\n", with: "server:\n  max-event-streams: 1\n")
        try config.write(toFile: world.configPath, atomically: true, encoding: .utf8)
        let kiln = try await KilnInstance.start(config: world.configPath)
        defer { Task { await kiln.stop() } }
        let first = EventClient("\(kiln.url)/api/v1/events")
        try await eventually("the first stream to open", within: .seconds(10)) { first.comments > 0 }
        let refused = try await HTTPTestClient.send("GET", "\(kiln.url)/api/v1/events")
        #expect(refused.status == 503 && refused.body.contains("server.max-event-streams"), "\(refused.status) \(refused.body)")
        first.close()
        // The server sees the hang-up at its next write: a keep-alive, at most 15 s later.
        try await eventually("a new stream to open once the first has closed", within: .seconds(45)) {
            let next = EventClient("\(kiln.url)/api/v1/events")
            defer { next.close() }
            try await eventually("an answer", within: .seconds(5)) { next.comments > 0 || next.ended }
            return next.comments > 0
        }
    }
}
