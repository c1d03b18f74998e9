import Foundation
import KilnCore
import KilnPipeline
import KilnTesting
import Testing

@testable import KilnNix

@Suite(.enabled(if: NixTest.enabled, "nix is not installed (set KILN_REQUIRE_NIX to make this a failure)"))
struct NixExecutorTests {
    let executor = NixExecutor(settings: NixSettings(options: NixTest.offlineOptions, killGrace: .seconds(2)))

    /// A unique number that ends up in the derivation name and in the builder's command line.
    static func marker() -> String { String(UInt64.random(in: 1_000_000_000...9_999_999_999)) }

    private func run(
        _ packages: [String: String], evaluationErrors: [String: String] = [:], build: [String],
        timeout: Duration = .seconds(120), maxSilent: Duration = .seconds(120), stop: StopSignal = StopSignal(),
        log: MemoryLog = MemoryLog()
    ) async throws -> JobReport {
        try await withTemporaryDirectory("kiln-nix") { directory in
            try TestFlake(packages: packages, evaluationErrors: evaluationErrors).write(to: directory.path)
            let job = TestJob(
                name: "test", target: .installables(build), workspace: directory.path, isPlainTree: true, timeout: timeout,
                maxSilent: maxSilent)
            return await executor.run(job, log: log, stop: stop)
        }
    }

    @Test(.timeLimit(.minutes(2))) func successBuildsEveryInstallable() async throws {
        let marker = Self.marker()
        let log = MemoryLog()
        let report = try await run(
            ["ok\(marker)": TestFlake.succeeding("hello-\(marker)"), "two\(marker)": TestFlake.succeeding("two")],
            build: [".#ok\(marker)", ".#two\(marker)"], log: log)
        #expect(report.outcome == .succeeded)
        #expect(report.exitCode == 0)
        #expect(report.outputs.count == 2)
        #expect(report.outputs.allSatisfy { $0.path.hasPrefix("/nix/store/") && FileManager.default.fileExists(atPath: $0.path) })
        #expect(log.text.contains("hello-\(marker)"))
        #expect(Processes.matching(marker).isEmpty)
    }

    @Test(.timeLimit(.minutes(2))) func builderFailureIsAFailureWithNixsMessage() async throws {
        let marker = Self.marker()
        let log = MemoryLog()
        let report = try await run(["bad\(marker)": "echo doomed-\(marker); exit 3"], build: [".#bad\(marker)"], log: log)
        guard case .failed(let code, let reason) = report.outcome else {
            Issue.record("expected failure, got \(report.outcome)")
            return
        }
        #expect(code == 100)
        #expect(reason.contains("failed with exit code 3"), "\(reason)")
        #expect(log.text.contains("doomed-\(marker)"))
        #expect(Processes.matching(marker).isEmpty)
    }

    @Test(.timeLimit(.minutes(2))) func evaluationErrorFailsWithTheEvaluatorsMessage() async throws {
        let report = try await run([:], evaluationErrors: ["broken": "boom-in-eval"], build: [".#broken"])
        guard case .failed(_, let reason) = report.outcome else {
            Issue.record("expected failure, got \(report.outcome)")
            return
        }
        #expect(reason == "evaluation failed: boom-in-eval")
    }

    @Test(.timeLimit(.minutes(2))) func wallClockTimeoutStopsEverything() async throws {
        let marker = Self.marker()
        let log = MemoryLog()
        // Prints every 0.2 s, so only the wall clock can stop it.
        let script = "echo started-\(marker); while true; do echo tick; $bb sleep 0.2; done; $bb sleep \(marker); true"
        let report = try await run(
            ["loop\(marker)": script], build: [".#loop\(marker)"], timeout: .seconds(15), maxSilent: .seconds(60), log: log)
        // 15 s: on a loaded machine nix may take seconds to start the builder, which must have run.
        #expect(report.outcome == .timedOut(after: .seconds(15), silent: false))
        #expect(log.text.contains("started-\(marker)"))
        #expect(log.text.contains("wall-clock limit reached"))
        try await eventually("the job's processes to be gone", within: .seconds(10)) { Processes.matching(marker).isEmpty }
    }

    @Test(.timeLimit(.minutes(2))) func silentJobIsStopped() async throws {
        let marker = Self.marker()
        let log = MemoryLog()
        let report = try await run(
            ["quiet\(marker)": "echo said-something-\(marker); $bb sleep \(marker); true"], build: [".#quiet\(marker)"],
            timeout: .seconds(60), maxSilent: .seconds(2), log: log)
        #expect(report.outcome == .timedOut(after: .seconds(2), silent: true))
        #expect(log.text.contains("said-something-\(marker)"))
        try await eventually("the job's processes to be gone", within: .seconds(10)) { Processes.matching(marker).isEmpty }
    }

    @Test(.timeLimit(.minutes(2))) func cancelStopsTheBuilderAndKeepsTheLog() async throws {
        let marker = Self.marker()
        let log = MemoryLog()
        let stop = StopSignal()
        async let report = run(
            ["long\(marker)": "echo running-\(marker); $bb sleep \(marker); true"], build: [".#long\(marker)"],
            stop: stop, log: log)
        try await eventually("the builder to start", within: .seconds(60)) { log.text.contains("running-\(marker)") }
        #expect(!Processes.matching(marker).isEmpty)
        stop.request(.requested)
        #expect(try await report.outcome == .cancelled(.requested))
        #expect(log.text.contains("cancelled; sending SIGINT to nix"))
        try await eventually("the job's processes to be gone", within: .seconds(10)) { Processes.matching(marker).isEmpty }
    }

    /// A server work tree may sit inside another git repository (the default data-dir is inside
    /// Kiln's own checkout); nix must build the tree itself, not look it up in that repository.
    @Test(.timeLimit(.minutes(2))) func plainTreeInsideAnotherGitRepositoryBuilds() async throws {
        try await withTemporaryDirectory("kiln-nested") { directory in
            let outer = try TestGitRepository(at: directory.path)
            try outer.write(".gitignore", "data/\n")
            try outer.commit("outer repository that ignores the data directory")
            let workspace = directory.appending("data/workspaces/1")
            try TestFlake(packages: ["nested": TestFlake.succeeding("nested")]).write(to: workspace)
            let job = TestJob(
                name: "nested", target: .installables([".#nested"]), workspace: workspace, isPlainTree: true,
                timeout: .seconds(60), maxSilent: .seconds(60))
            let report = await executor.run(job, log: MemoryLog(), stop: StopSignal())
            #expect(report.outcome == .succeeded)
        }
    }

    @Test func outputNamesFollowFromStorePaths() {
        let derivations = ["/nix/store/\(String(repeating: "a", count: 32))-lib-1.0.drv", "/nix/store/\(String(repeating: "b", count: 32))-lib.drv"]
        let hash = String(repeating: "c", count: 32)
        #expect(NixExecutor.outputName("/nix/store/\(hash)-lib-1.0", derivations: derivations) == "out")
        #expect(NixExecutor.outputName("/nix/store/\(hash)-lib-1.0-dev", derivations: derivations) == "dev")
        #expect(NixExecutor.outputName("/nix/store/\(hash)-lib", derivations: derivations) == "out")
        #expect(NixExecutor.outputName("/nix/store/\(hash)-lib-man", derivations: derivations) == "man")
    }

    @Test func workspaceRelativeInstallablesAreAnchored() {
        #expect(NixExecutor.anchor(".#hello", in: "/w/1") == "path:/w/1#hello")
        #expect(NixExecutor.anchor(".", in: "/w/1") == "path:/w/1")
        #expect(NixExecutor.anchor("./sub#x", in: "/w/1") == "path:/w/1/sub#x")
        #expect(NixExecutor.anchor("github:o/r#x", in: "/w/1") == "github:o/r#x")
    }

    @Test(.timeLimit(.minutes(1))) func readinessConfirmsTheSandbox() async {
        guard case .ready(let detail) = await executor.readiness() else {
            Issue.record("real nix should be ready")
            return
        }
        #expect(detail.contains("sandbox = true, sandbox-fallback = false"))
    }
}

@Suite struct NixReadinessTests {
    /// A stand-in nix that reports the sandbox off, as a daemon that ignores Kiln's options would.
    @Test func refusesWhenNixReportsTheSandboxOff() async throws {
        try await withTemporaryDirectory { directory in
            let nix = directory.appending("nix")
            try writeExecutable(
                """
                #!/bin/sh
                case "$1" in
                  --version) echo "nix (Nix) 2.8.0" ;;
                  show-config) echo '{"sandbox":{"value":false},"sandbox-fallback":{"value":true}}' ;;
                esac
                """, to: nix)
            for helper in ["nix-store", "nix-instantiate"] {
                try writeExecutable("#!/bin/sh\necho \(helper)\n", to: directory.appending(helper))
            }
            let readiness = await NixExecutor(settings: NixSettings(binary: nix)).readiness()
            #expect(
                readiness
                    == .notReady(
                        "nix reports sandbox = false, sandbox-fallback = true; Kiln builds only with sandbox = true and sandbox-fallback = false (a nix daemon must trust Kiln's user for Kiln's settings to apply)"
                    ))
        }
    }

    @Test func missingNixIsNamed() async {
        let readiness = await NixExecutor(settings: NixSettings(binary: "no-such-nix-binary")).readiness()
        #expect(
            readiness
                == .notReady(
                    "nix.binary 'no-such-nix-binary' was not found on PATH; install nix (Debian: apt-get install nix-bin) or set nix.binary to its full path"
                ))
    }

    @Test func sandboxOptionsCannotBeOverridden() {
        let executor = NixExecutor(settings: NixSettings(options: ["sandbox": "false", "cores": "2"]))
        let arguments = executor.commonArguments
        #expect(!arguments.joined(separator: " ").contains("sandbox false"))
        #expect(arguments.suffix(6) == ["--option", "sandbox", "true", "--option", "sandbox-fallback", "false"])
        #expect(arguments.contains("cores"))
    }
}
