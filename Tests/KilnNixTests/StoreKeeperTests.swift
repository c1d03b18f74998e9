import Foundation
import KilnCore
import KilnPipeline
import KilnTesting
import Logging
import Testing

@testable import KilnNix

/// The cache service's housekeeping with real nix, in a store of its own (a chroot store under
/// the test's directory): a collection there cannot delete what other tests are building.
@Suite(.enabled(if: NixTest.enabled, "nix is not installed (set KILN_REQUIRE_NIX to make this a failure)"))
struct StoreKeeperTests {
    /// A chroot store, the nix file of its test derivations, and an executor that uses it.
    struct ChrootStore {
        let root: String
        let directory: TemporaryDirectory
        let executor: NixExecutor

        init(_ directory: TemporaryDirectory) throws {
            self.directory = directory
            root = directory.appending("chroot")
            try FileManager.default.createDirectory(atPath: directory.appending("nix/bin"), withIntermediateDirectories: true)
            try FileManager.default.copyItem(atPath: TestFlake.busybox, toPath: directory.appending("nix/bin/busybox"))
            // name → a derivation whose output holds `text`, and a 1 MiB file the same in every output.
            try """
                { name, text }:
                derivation {
                  inherit name text;
                  system = builtins.currentSystem;
                  builder = "${./bin}/busybox";
                  args = [ "sh" "-c" "bb=${./bin}/busybox; $bb mkdir $out; echo $text > $out/text; $bb head -c 1048576 /dev/zero > $out/zeros" ];
                }
                """.write(toFile: directory.appending("nix/drv.nix"), atomically: true, encoding: .utf8)
            var options = NixTest.offlineOptions
            options["store"] = root
            executor = NixExecutor(settings: NixSettings(options: options, killGrace: .seconds(2)))
        }

        var storeArguments: [String] { ["--store", root, "--option", "substituters", ""] }

        func instantiate(_ name: String) async throws -> String {
            let (status, output) = try await Processes.run(
                "/usr/bin/nix-instantiate",
                [directory.appending("nix/drv.nix"), "--argstr", "name", name, "--argstr", "text", name] + storeArguments)
            try #require(status == 0, "\(output)")
            return try #require(output.split(whereSeparator: \.isNewline).last.map(String.init))
        }

        func build(_ name: String) async throws -> String {
            let (status, output) = try await Processes.run("/usr/bin/nix-store", ["--realise", try await instantiate(name)] + storeArguments)
            try #require(status == 0, "\(output)")
            return try #require(output.split(whereSeparator: \.isNewline).last.map(String.init))
        }

        func isValid(_ path: String) async throws -> Bool {
            try await Processes.run("/usr/bin/nix-store", ["--check-validity", path] + storeArguments).status == 0
        }
    }

    /// Builds of octo/hello's main that end succeeded, each with one job that built `output`.
    static func succeededBuilds(_ outputs: [String], _ coordinator: BuildCoordinator, _ store: InMemoryStore) async throws -> [BuildID] {
        let repository = store.repository(forge: "github", name: "octo/hello")
        var builds: [BuildID] = []
        for (index, output) in outputs.enumerated() {
            let sha = String(repeating: String(index + 1), count: 40)
            let delivery = NewDelivery(
                forge: "github", deliveryID: "d\(index)", repositoryID: repository, repository: "octo/hello", ref: .branch("main"), sha: sha)
            let build = try await coordinator.accept(delivery).buildID
            _ = try #require(try await coordinator.claimBuildToPlan(excluding: []))
            let job = PlannedJob(name: "app", target: .installables([".#app"]), needs: [], timeout: .seconds(60), maxSilent: .seconds(60))
            try await coordinator.finishPlanning(build, .planned([job]), resolution: nil)
            let (claimed, _) = try #require(try await coordinator.claimJob(freeMemory: .max))
            let ended = try await coordinator.finishJob(
                claimed.job.id, JobReport(outcome: .succeeded, outputs: [BuiltOutput(name: "out", path: output)], duration: .seconds(1)),
                details: nil)
            #expect(ended.state == .succeeded)
            builds.append(build)
        }
        return builds
    }

    @Test(.timeLimit(.minutes(2))) func rootsFollowTheLastBuildsAndCollectionFreesTheRest() async throws {
        try await withTemporaryDirectory("kiln-store-keeper") { directory in
            let chroot = try ChrootStore(directory)
            let marker = String(UInt64.random(in: 1_000_000_000...9_999_999_999))
            var outputs: [String] = []
            for index in 1...4 { outputs.append(try await chroot.build("kept\(index)-\(marker)")) }
            let garbage = try await chroot.build("garbage-\(marker)")
            let store = InMemoryStore()
            let coordinator = BuildCoordinator(store: store, logger: Logger(label: "test"))
            let builds = try await Self.succeededBuilds(outputs, coordinator, store)
            let roots = directory.appending("data/gcroots")
            let keeper = StoreKeeper(
                coordinator: coordinator, maintenance: chroot.executor, repositories: [("github", "octo/hello")],
                settings: StoreKeeper.Settings(keepOutputs: 3, roots: roots), logger: Logger(label: "test"))

            // The last three builds of main are kept, one link per output.
            let synced = try await keeper.syncRoots()
            #expect(synced.added == 3 && synced.removed == 0)
            #expect(Set(try FileManager.default.contentsOfDirectory(atPath: roots)) == Set(builds.suffix(3).map { "\($0)" }))
            let links = try FileManager.default.contentsOfDirectory(atPath: roots + "/\(builds[3])").filter { $0 != "done" }
            #expect(links.count == 1)
            let link = links.first ?? ""
            #expect(try FileManager.default.destinationOfSymbolicLink(atPath: roots + "/\(builds[3])/\(link)") == outputs[3])
            #expect(try await keeper.syncRoots() == (0, 0), "a second sync changes nothing")

            // A collection frees the old build's output and the garbage, and keeps the kept ones.
            let freed = try await chroot.executor.collectGarbage(maxFreed: nil)
            #expect(freed.paths >= 2 && freed.bytes >= 2 << 20, "\(freed)")
            #expect(try await !chroot.isValid(outputs[0]))
            #expect(try await !chroot.isValid(garbage))
            for output in outputs.suffix(3) { #expect(try await chroot.isValid(output)) }

            // Builds removed by retention take their roots with them; the branch's newest build stays.
            _ = try await coordinator.removeOld(endedBefore: Date().addingTimeInterval(60), eventsKept: 0)
            #expect(try await keeper.syncRoots() == (0, 2))
            #expect(try FileManager.default.contentsOfDirectory(atPath: roots) == ["\(builds[3])"])
            _ = try await chroot.executor.collectGarbage(maxFreed: nil)
            for output in outputs.prefix(3) { #expect(try await !chroot.isValid(output)) }
            #expect(try await chroot.isValid(outputs[3]))
        }
    }

    @Test(.timeLimit(.minutes(2))) func collectionRunsOnlyBelowMinFree() async throws {
        try await withTemporaryDirectory("kiln-store-min-free") { directory in
            let chroot = try ChrootStore(directory)
            let garbage = try await chroot.build("min-free-\(UInt64.random(in: 1_000_000_000...9_999_999_999))")
            let keeper = StoreKeeper(
                coordinator: BuildCoordinator(store: InMemoryStore(), logger: Logger(label: "test")), maintenance: chroot.executor,
                repositories: [], settings: StoreKeeper.Settings(roots: directory.appending("roots")), logger: Logger(label: "test"))
            let free = try #require(chroot.executor.freeBytes())
            #expect(try await keeper.collect(minFree: free / 2) == nil, "enough free space: nothing collected")
            #expect(try await chroot.isValid(garbage))
            let freed = try #require(try await keeper.collect(minFree: free + (64 << 20)))
            #expect(freed.paths >= 1, "\(freed)")
            #expect(try await !chroot.isValid(garbage))
        }
    }

    @Test(.timeLimit(.minutes(2))) func warmUpRealisesAndSaysSo() async throws {
        try await withTemporaryDirectory("kiln-store-warm") { directory in
            let chroot = try ChrootStore(directory)
            let derivation = try await chroot.instantiate("warm-\(UInt64.random(in: 1_000_000_000...9_999_999_999))")
            let store = InMemoryStore()
            let coordinator = BuildCoordinator(store: store, logger: Logger(label: "test"))
            let keeper = StoreKeeper(
                coordinator: coordinator, maintenance: chroot.executor, repositories: [],
                settings: StoreKeeper.Settings(warm: [derivation], roots: directory.appending("roots")), logger: Logger(label: "test"))
            await keeper.warmUp()
            #expect(keeper.warmState.current.state == "succeeded", "\(keeper.warmState.current)")
            // The output is in the store, and kept there.
            let output = try FileManager.default.destinationOfSymbolicLink(atPath: directory.appending("roots/warm/result"))
            #expect(try await chroot.isValid(output))
            let events = try await store.events(after: 0, filter: EventQuery(), limit: 10).map(\.event)
            #expect(events.map(\.type) == ["cache.warming", "cache.warmed"])
            #expect(events.last?.data.contains("\"outcome\":\"succeeded\"") == true)

            // Something that cannot be built: failed, and why.
            let failing = StoreKeeper(
                coordinator: coordinator, maintenance: chroot.executor, repositories: [],
                settings: StoreKeeper.Settings(warm: [directory.appending("nowhere.drv")], roots: directory.appending("roots")),
                logger: Logger(label: "test"))
            await failing.warmUp()
            #expect(failing.warmState.current.state == "failed")
            #expect(failing.warmState.current.error?.isEmpty == false)
        }
    }

    @Test(.timeLimit(.minutes(2))) func sizeAndOptimiseMatchNix() async throws {
        try await withTemporaryDirectory("kiln-store-size") { directory in
            let chroot = try ChrootStore(directory)
            let marker = UInt64.random(in: 1_000_000_000...9_999_999_999)
            _ = try await chroot.build("same-a-\(marker)")
            _ = try await chroot.build("same-b-\(marker)")
            let (paths, bytes) = try await chroot.executor.storeSize()
            let (status, json) = try await Processes.run(
                "/usr/bin/nix", ["path-info", "--extra-experimental-features", "nix-command", "--all", "--json"] + chroot.storeArguments)
            try #require(status == 0)
            let described = try #require(try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [[String: Any]])
            #expect(paths == described.count)
            #expect(bytes == described.reduce(0) { $0 + ((($1["narSize"] as? NSNumber)?.int64Value) ?? 0) })
            // The two outputs' 1 MiB of zeros become one file.
            let saved = try await chroot.executor.optimise()
            #expect(saved >= 1_000_000, "saved \(saved) bytes")
        }
    }
}
