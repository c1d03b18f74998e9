import Foundation
import KilnTesting
import Testing

/// The cache service through `kiln serve`: the outputs of a branch's last builds kept as roots,
/// statistics that match nix and the file cache, and the warm-up, on its page and in the events.
@Suite(.enabled(if: NixTest.enabled, "nix is not installed (set KILN_REQUIRE_NIX to make this a failure)"))
struct CacheServiceTests {
    @Test(.timeLimit(.minutes(3))) func rootsStatisticsAndWarmUp() async throws {
        let world = try await World.make()
        defer { Task { await world.close() } }
        let marker = String(UInt64.random(in: 1_000_000_000...9_999_999_999))
        // Something to warm: a derivation in the store, not yet built.
        let warmDirectory = world.directory.appending("warm")
        try TestFlake(packages: [:]).write(to: warmDirectory)
        try """
            derivation { name = "warm-\(marker)"; system = builtins.currentSystem; builder = "${./bin}/busybox"; args = [ "sh" "-c" "${./bin}/busybox mkdir $out" ]; }
            """.write(toFile: warmDirectory + "/warm.nix", atomically: true, encoding: .utf8)
        let (status, instantiated) = try await Processes.run(
            "/usr/bin/nix-instantiate", [warmDirectory + "/warm.nix", "--option", "substituters", ""])
        try #require(status == 0, "\(instantiated)")
        let warm = try #require(instantiated.split(whereSeparator: \.isNewline).last.map(String.init))

        let secret = try runCommand("/usr/bin/nix", ["key", "generate-secret", "--extra-experimental-features", "nix-command", "--key-name", "kiln-cache-test"])
        try secret.write(toFile: world.directory.appending("cache.key"), atomically: true, encoding: .utf8)
        let cacheDirectory = world.directory.appending("binary-cache")
        let config = try String(contentsOfFile: world.configPath, encoding: .utf8)
            .replacingOccurrences(
                of: "  options:\n    substituters: \"\"\n",
                with: """
                      options:
                        substituters: ""
                      warm: ["\(warm)"]
                      cache:
                        push-to: file://\(cacheDirectory)
                        secret-key-file: cache.key

                    """)
            .replacingOccurrences(of: "  data-dir: data\n", with: "  data-dir: data\n  keep-outputs: 1\n")
        try config.write(toFile: world.configPath, atomically: true, encoding: .utf8)
        try TestFlake(packages: ["app": TestFlake.succeeding("cached-\(marker)")]).write(to: world.repository.path)
        try world.repository.write(".kiln.yml", "jobs:\n  app:\n    build: .#app\n    cache: push\n")
        let first = try world.repository.commit("first")
        let kiln = try await KilnInstance.start(config: world.configPath)
        defer { Task { await kiln.stop() } }

        // The warm-up runs at start, and says how it went.
        let warmed = try await eventually("the warm-up to end", within: .seconds(60)) { () -> [String: Any]? in
            let cache = try await HTTPTestClient.send("GET", "\(kiln.url)/api/v1/cache").json
            let warm = cache["warm"] as? [String: Any]
            return warm?["state"] as? String == "warming" || warm?["state"] as? String == "idle" ? nil : warm
        }
        #expect(warmed["state"] as? String == "succeeded", "\(warmed)")
        #expect(warmed["installables"] as? [String] == [warm])
        let (shown, outputs) = try await Processes.run("/usr/bin/nix-store", ["--query", "--outputs", warm])
        try #require(shown == 0)
        let warmOutput = outputs.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(FileManager.default.fileExists(atPath: warmOutput), "the warm-up built \(warmOutput)")

        // Two builds of main: with keep-outputs 1 only the second's outputs stay rooted.
        let firstID = try #require(try await kiln.push(repository: World.name, sha: first, secret: World.secret).json["build_id"] as? Int)
        try await eventually("the first build to succeed", within: .seconds(90)) { (try await kiln.build(firstID))["state"] as? String == "succeeded" }
        let roots = world.directory.appending("data/gcroots")
        try await eventually("the first build's roots", within: .seconds(30)) { FileManager.default.fileExists(atPath: roots + "/\(firstID)/done") }
        try TestFlake(packages: ["app": TestFlake.succeeding("second-\(marker)")]).write(to: world.repository.path)
        let second = try world.repository.commit("second")
        let secondID = try #require(
            try await kiln.push(repository: World.name, sha: second, before: first, secret: World.secret).json["build_id"] as? Int)
        try await eventually("the second build to succeed", within: .seconds(90)) { (try await kiln.build(secondID))["state"] as? String == "succeeded" }
        try await eventually("the roots to follow the second build", within: .seconds(30)) {
            let present = (try? FileManager.default.contentsOfDirectory(atPath: roots)) ?? []
            return present.contains("\(secondID)") && !present.contains("\(firstID)")
                && FileManager.default.fileExists(atPath: roots + "/\(secondID)/done")
        }
        let job = try #require(((try await kiln.build(secondID))["jobs"] as? [[String: Any]])?.first)
        let output = try #require((job["outputs"] as? [[String: Any]])?.first?["path"] as? String)
        let links = try FileManager.default.contentsOfDirectory(atPath: roots + "/\(secondID)").filter { $0 != "done" }
        #expect(try links.map { try FileManager.default.destinationOfSymbolicLink(atPath: roots + "/\(secondID)/\($0)") } == [output])

        // The statistics: what the two jobs did, and the file cache as it is.
        let cache = try await HTTPTestClient.send("GET", "\(kiln.url)/api/v1/cache?window=1h").json
        #expect(cache["window_seconds"] as? Int == 3600)
        #expect(cache["jobs"] as? Int == 2)
        #expect((cache["derivations"] as? [String: Any])?["built"] as? Int == 2)
        #expect(cache["pushes"] as? Int == 2)
        #expect((cache["pushed_bytes"] as? Int ?? 0) > 0)
        #expect((cache["kept"] as? [String: Any])?["builds"] as? Int == 1)
        let binary = try #require(cache["binary_cache"] as? [String: Any])
        let narinfos = try FileManager.default.contentsOfDirectory(atPath: cacheDirectory).filter { $0.hasSuffix(".narinfo") }
        #expect(binary["measured"] as? Bool == true)
        #expect(binary["nars"] as? Int == narinfos.count)
        #expect((binary["newest"] as? [String: Any])?["path"] as? String != nil)
        let store = try #require(cache["store"] as? [String: Any])
        #expect((store["paths"] as? Int ?? 0) > 0 && (store["size_bytes"] as? Int ?? 0) > 0)
        let page = try await HTTPTestClient.send("GET", "\(kiln.url)/cache?window=1h")
        #expect(page.status == 200 && page.body.contains("<h1>Cache</h1>") && page.body.contains(warm))
        let bad = try await HTTPTestClient.send("GET", "\(kiln.url)/api/v1/cache?window=forever")
        #expect(bad.status == 400 && (bad.json["error"] as? String)?.contains("not a duration") == true)
        // The warm-up's events.
        let events = EventClient("\(kiln.url)/api/v1/events?last-event-id=0&types=cache.warming,cache.warmed")
        defer { events.close() }
        try await eventually("the warm-up's events", within: .seconds(10)) { events.events.count == 2 }
        #expect(events.events.map(\.type) == ["cache.warming", "cache.warmed"])
        #expect(events.events.last?.json["outcome"] as? String == "succeeded")
    }
}
