import Foundation
import KilnCore
import KilnPipeline
import KilnTesting
import Testing

@testable import KilnNix

/// nix's remote builders, for real: an sshd on loopback in front of a store of its own builds
/// what only it can build, the job's record names it, and an unreachable one is reported.
@Suite(.enabled(if: NixTest.enabled, "nix is not installed (set KILN_REQUIRE_NIX to make this a failure)"))
struct RemoteBuilderTests {
    static func executor(_ builder: RemoteBuilder, mandatory: Bool = true) -> NixExecutor {
        var options = NixTest.offlineOptions
        options["builders"] = builder.builderLine(mandatory: mandatory)
        options["builders-use-substitutes"] = "true"
        var settings = NixSettings(options: options, killGrace: .seconds(2))
        settings.sshOptions = builder.sshOptions
        return NixExecutor(settings: settings)
    }

    func job(_ installables: [String], in directory: String) -> TestJob {
        TestJob(
            name: "remote", target: .installables(installables), workspace: directory, isPlainTree: true, timeout: .seconds(120),
            maxSilent: .seconds(60))
    }

    /// A flake of two packages, `remote` (requiring the builder's feature) and `here`, with fresh
    /// derivations; returns its directory and the marker its packages print.
    static func flake(in directory: TemporaryDirectory, remoteOnly builder: RemoteBuilder) throws -> (String, String) {
        let marker = String(UInt64.random(in: 1_000_000_000...9_999_999_999))
        let flake = directory.appending("flake")
        var packages = TestFlake(packages: [
            "remote": TestFlake.succeeding("remote-\(marker)"), "here": TestFlake.succeeding("here-\(marker)"),
        ])
        packages.features = ["remote": [builder.feature]]
        try packages.write(to: flake)
        return (flake, marker)
    }

    @Test(.timeLimit(.minutes(2))) func whatOnlyTheBuilderOffersIsBuiltThereAndTheRecordNamesIt() async throws {
        try await withTemporaryDirectory("kiln-remote-builder") { directory in
            let builder = try RemoteBuilder(in: directory.appending("machine"))
            try await builder.start()
            defer { builder.stop() }
            let (flake, marker) = try Self.flake(in: directory, remoteOnly: builder)
            let log = RecordingLog()
            let report = await Self.executor(builder).run(job([".#remote", ".#here"], in: flake), log: log, stop: StopSignal())
            #expect(report.outcome == .succeeded, "\(report.outcome)\n\(log.text)")
            #expect(report.machines == [builder.machine])
            #expect(log.text.contains("-remote.drv' on \(builder.machine)\n"), "\(log.text)")
            #expect(log.text.contains("remote> remote-\(marker)"), "the remote builder's output reaches the job's log")
            let remote = try #require(report.outputs.first { $0.path.hasSuffix("-remote") })
            let here = try #require(report.outputs.first { $0.path.hasSuffix("-here") })
            // Built there and copied back; the other one never left this machine.
            #expect(builder.holds(remote.path) && FileManager.default.fileExists(atPath: remote.path))
            #expect(!builder.holds(here.path))
            #expect(try String(contentsOfFile: remote.path + "/result", encoding: .utf8) == "remote-\(marker)\n")
            #expect(!builder.log.isEmpty)
        }
    }

    @Test(.timeLimit(.minutes(2))) func anUnreachableBuilderFailsWhatOnlyItCouldBuildAndTheRestBuildsHere() async throws {
        try await withTemporaryDirectory("kiln-remote-builder-down") { directory in
            // Configured, never started: nothing listens on its port.
            let builder = try RemoteBuilder(in: directory.appending("machine"))
            let (flake, marker) = try Self.flake(in: directory, remoteOnly: builder)
            let executor = Self.executor(builder, mandatory: false)

            // Anything may go to the builder; it cannot be reached, so this machine builds it.
            let fellBackLog = RecordingLog()
            let fellBack = await executor.run(job([".#here"], in: flake), log: fellBackLog, stop: StopSignal())
            #expect(fellBack.outcome == .succeeded, "\(fellBack.outcome)")
            #expect(fellBackLog.text.contains("cannot build on 'ssh-ng://root@127.0.0.1"), "nix tried the builder first: \(fellBackLog.text)")
            #expect(fellBack.machines.isEmpty)

            let log = RecordingLog()
            let report = await executor.run(job([".#remote"], in: flake), log: log, stop: StopSignal())
            // Not the repository's failure: the machine that should have built it was not there.
            guard case .errored(let reason) = report.outcome else {
                Issue.record("expected an error, got \(report.outcome)\n\(log.text)")
                return
            }
            #expect(reason.contains("remote builder \(builder.machine) could not be reached"), "\(reason)")
            #expect(!reason.contains(builder.storeRoot), "the builder's query stays out of the description")
            #expect(reason.contains(builder.feature), "\(reason)")
            #expect(report.machines.isEmpty)
        }
    }
}
