import Foundation
import KilnCore
import KilnPipeline
import KilnTesting
import Testing

@testable import KilnNix

@Suite(.enabled(if: NixTest.enabled, "nix is not installed (set KILN_REQUIRE_NIX to make this a failure)"))
struct NixDaemonTests {
    /// Two jobs, one after the other, build through one kept nix-daemon; each gets its own log,
    /// outputs and CPU; closing the executor ends the daemon and removes its home.
    @Test(.timeLimit(.minutes(2))) func consecutiveJobsShareOneDaemonUntilClosed() async throws {
        try await withTemporaryDirectory("kiln-daemons") { scratch in
            var settings = NixSettings(options: NixTest.offlineOptions, killGrace: .seconds(2))
            settings.daemonDirectory = scratch.appending("daemons")
            let executor = NixExecutor(settings: settings)
            let marker = String(UInt64.random(in: 1_000_000_000...9_999_999_999))
            var daemons: [[pid_t]] = []
            for name in ["first", "second"] {
                let log = MemoryLog()
                let report = try await withTemporaryDirectory("kiln-nix") { directory in
                    try TestFlake(packages: ["\(name)\(marker)": "echo said-\(name)-\(marker); $bb mkdir $out"]).write(to: directory.path)
                    let job = TestJob(
                        name: name, target: .installables([".#\(name)\(marker)"]), workspace: directory.path, isPlainTree: true,
                        timeout: .seconds(60), maxSilent: .seconds(60))
                    return await executor.run(job, log: log, stop: StopSignal())
                }
                #expect(report.outcome == .succeeded)
                #expect(report.outputs.count == 1 && report.outputs.allSatisfy { FileManager.default.fileExists(atPath: $0.path) })
                #expect(report.outputs.first?.narHash?.hasPrefix("sha256-") == true)
                #expect(report.cpuSeconds != nil)
                #expect(log.text.contains("said-\(name)-\(marker)"))
                #expect(!log.text.contains("said-\(name == "first" ? "second" : "first")"))
                daemons.append(executor.daemons.idleProcesses)
            }
            #expect(daemons[0].count == 1)
            #expect(daemons[0] == daemons[1], "the second job should build with the first one's daemon")
            let pid = try #require(daemons[0].first)
            #expect(ProcessTree.isAlive(pid))
            #expect(try FileManager.default.contentsOfDirectory(atPath: scratch.appending("daemons")).count == 1)
            await executor.close()
            #expect(!ProcessTree.isAlive(pid))
            #expect(try FileManager.default.contentsOfDirectory(atPath: scratch.appending("daemons")).isEmpty)
        }
    }

    /// A job stopped mid-build ends its daemon: the next job starts another.
    @Test(.timeLimit(.minutes(2))) func aStoppedJobsDaemonIsNotKept() async throws {
        let executor = NixExecutor(settings: NixSettings(options: NixTest.offlineOptions, killGrace: .seconds(2)))
        let marker = String(UInt64.random(in: 1_000_000_000...9_999_999_999))
        let log = MemoryLog()
        let stop = StopSignal()
        try await withTemporaryDirectory("kiln-nix") { directory in
            try TestFlake(packages: ["long\(marker)": "echo running-\(marker); $bb sleep \(marker); true"]).write(to: directory.path)
            let job = TestJob(
                name: "long", target: .installables([".#long\(marker)"]), workspace: directory.path, isPlainTree: true,
                timeout: .seconds(60), maxSilent: .seconds(60))
            async let report = executor.run(job, log: log, stop: stop)
            try await eventually("the builder to start", within: .seconds(60)) { log.text.contains("running-\(marker)") }
            stop.request(.requested)
            #expect(await report.outcome == .cancelled(.requested))
        }
        #expect(executor.daemons.idleProcesses.isEmpty)
        try await eventually("the builder to be gone", within: .seconds(10)) { Processes.matching(marker).isEmpty }
        await executor.close()
    }

    /// The daemon's results give the exit code `nix-store --realise` would have exited with.
    @Test func resultsMapToRealisesExitCodes() {
        func code(_ statuses: UInt64...) -> Int32 {
            DaemonBuildResult.exitCode(statuses.map { DaemonBuildResult(path: "x.drv!out", status: $0, errorMessage: "") })
        }
        #expect(code(0, 1, 2) == 0)
        #expect(code(3) == 100)
        #expect(code(10) == 100)
        #expect(code(8) == 101)
        #expect(code(5) == 102)
        #expect(code(3, 8) == 101)
        #expect(code(12) == 104)
        #expect(code(9) == 1)
        #expect(code(0, 6) == 1)
    }
}
