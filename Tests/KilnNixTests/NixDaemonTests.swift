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
                    let job = flakeJob(name, ".#\(name)\(marker)", in: directory)
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

    /// What a kept daemon builds runs in nix's sandbox: the builder cannot read a file of the host.
    @Test(.timeLimit(.minutes(2))) func theDaemonsBuildsAreSandboxed() async throws {
        let executor = NixExecutor(settings: NixSettings(options: NixTest.offlineOptions, killGrace: .seconds(2)))
        let marker = String(UInt64.random(in: 1_000_000_000...9_999_999_999))
        try await withTemporaryDirectory("kiln-canary") { host in
            // World-readable, outside the store: only the sandbox keeps a builder from it.
            let canary = host.appending("canary")
            try "secret-\(marker)\n".write(toFile: canary, atomically: true, encoding: .utf8)
            try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: host.path)
            try FileManager.default.setAttributes([.posixPermissions: 0o644], ofItemAtPath: canary)
            let log = MemoryLog()
            let report = try await withTemporaryDirectory("kiln-nix") { directory in
                try TestFlake(packages: ["peek\(marker)": "$bb cat \(canary) && echo leaked-\(marker); $bb mkdir $out"]).write(to: directory.path)
                let job = flakeJob("peek", ".#peek\(marker)", in: directory)
                return await executor.run(job, log: log, stop: StopSignal())
            }
            #expect(report.outcome == .succeeded)
            #expect(executor.daemons.idleProcesses.count == 1, "the job should have built with a kept daemon")
            #expect(log.text.contains("No such file or directory"), "\(log.text)")
            #expect(!log.text.contains("secret-\(marker)"))
            #expect(!log.text.contains("leaked-\(marker)"))
        }
        await executor.close()
    }

    /// A kept daemon that died while idle is not given to the next job, which starts another.
    @Test(.timeLimit(.minutes(2))) func aDaemonThatDiedIdleIsReplaced() async throws {
        let executor = NixExecutor(settings: NixSettings(options: NixTest.offlineOptions, killGrace: .seconds(2)))
        let marker = String(UInt64.random(in: 1_000_000_000...9_999_999_999))
        func build(_ name: String) async throws -> JobReport {
            try await withTemporaryDirectory("kiln-nix") { directory in
                try TestFlake(packages: ["\(name)\(marker)": "$bb mkdir $out"]).write(to: directory.path)
                let job = flakeJob(name, ".#\(name)\(marker)", in: directory)
                return await executor.run(job, log: MemoryLog(), stop: StopSignal())
            }
        }
        #expect(try await build("before").outcome == .succeeded)
        let first = try #require(executor.daemons.idleProcesses.first)
        kill(first, SIGKILL)
        try await eventually("the daemon to die", within: .seconds(10)) { !ProcessTree.isAlive(first) }
        #expect(try await build("after").outcome == .succeeded)
        let second = try #require(executor.daemons.idleProcesses.first)
        #expect(second != first)
        await executor.close()
    }

    /// A job stopped mid-build ends its daemon: the next job starts another.
    @Test(.timeLimit(.minutes(2))) func aStoppedJobsDaemonIsNotKept() async throws {
        let executor = NixExecutor(settings: NixSettings(options: NixTest.offlineOptions, killGrace: .seconds(2)))
        let marker = String(UInt64.random(in: 1_000_000_000...9_999_999_999))
        let log = MemoryLog()
        let stop = StopSignal()
        try await withTemporaryDirectory("kiln-nix") { directory in
            try TestFlake(packages: ["long\(marker)": "echo running-\(marker); $bb sleep \(marker); true"]).write(to: directory.path)
            let job = flakeJob("long", ".#long\(marker)", in: directory)
            async let report = executor.run(job, log: log, stop: stop)
            try await eventually("the builder to start", within: .seconds(60)) { log.text.contains("running-\(marker)") }
            stop.request(.requested)
            #expect(await report.outcome == .cancelled(.requested))
        }
        #expect(executor.daemons.idleProcesses.isEmpty)
        try await eventually("the builder to be gone", within: .seconds(10)) { Processes.matching(marker).isEmpty }
        await executor.close()
    }

    /// A kept daemon takes what a configured binary cache has instead of building it (a cache in
    /// a directory here: nothing on the network is reachable).
    @Test(.timeLimit(.minutes(3))) func aDaemonSubstitutesFromTheConfiguredCache() async throws {
        try await withCachedOutput { job, _, output, cache, _ in
            let executor = NixExecutor(
                settings: NixSettings(options: ["substituters": cache, "require-sigs": "false"], killGrace: .seconds(2)))
            let log = MemoryLog()
            let report = await executor.run(job, log: log, stop: StopSignal())
            #expect(report.outcome == .succeeded, "\(log.text)")
            #expect(executor.daemons.idleProcesses.count == 1, "the job should have built with a kept daemon")
            #expect(FileManager.default.fileExists(atPath: output))
            #expect(report.substituted == 1)
            #expect(report.built.isEmpty)
            #expect(!log.text.contains("built-"), "the builder ran: \(log.text)")
            await executor.close()
        }
    }

    /// Kiln's options reach the daemon with each request, not only on its command line: where a
    /// system daemon owns the store, `nix-daemon --stdio` only relays to it. Here the daemon's
    /// command line has none of them, and the cache it must use is named only in the request.
    @Test(.timeLimit(.minutes(3))) func optionsReachTheDaemonWithEachRequest() async throws {
        try await withCachedOutput { _, derivation, output, cache, publicKey in
            try await withTemporaryDirectory("kiln-daemon-home") { home in
                try FileManager.default.createDirectory(atPath: home.appending("tmp"), withIntermediateDirectories: true)
                let daemon = try await NixDaemonConnection.start(
                    "/usr/bin/nix-daemon", arguments: [],
                    overrides: [("substituters", cache), ("trusted-public-keys", publicKey)],
                    home: home.path, environment: ScrubbedEnvironment.variables(home: home.path))
                let results = try await daemon.build(
                    ["\(derivation)!out"], settings: DaemonBuildSettings(), maxSilentSeconds: 60, line: { _ in })
                #expect(results.map(\.status) == [1], "\(results)")
                #expect(FileManager.default.fileExists(atPath: output))
                await daemon.closeAndWait()
            }
        }
    }

    /// A daemon lives past its greeting's time limit: only the greeting is timed.
    @Test(.timeLimit(.minutes(2))) func aDaemonOutlivesItsGreetingLimit() async throws {
        var settings = NixSettings(options: NixTest.offlineOptions, killGrace: .seconds(2))
        // Long enough to greet on a loaded machine; the build outlasts it.
        settings.daemonGreetingLimit = .seconds(4)
        let executor = NixExecutor(settings: settings)
        let marker = String(UInt64.random(in: 1_000_000_000...9_999_999_999))
        let log = MemoryLog()
        let report = try await withTemporaryDirectory("kiln-nix") { directory in
            try TestFlake(packages: ["slow\(marker)": "$bb sleep 6; echo done-\(marker); $bb mkdir $out"]).write(to: directory.path)
            let job = flakeJob("slow", ".#slow\(marker)", in: directory)
            return await executor.run(job, log: log, stop: StopSignal())
        }
        #expect(report.outcome == .succeeded, "\(log.text)")
        #expect(log.text.contains("done-\(marker)"))
        #expect(!log.text.contains("building with nix-store"), "\(log.text)")
        #expect(executor.daemons.idleProcesses.count == 1, "the daemon should be kept after the build")
        await executor.close()
    }

    /// A dependency that nix stops for its silence times the job out, as with `nix-store`,
    /// though nix answers only for the derivation asked for ("a dependency failed").
    @Test(.timeLimit(.minutes(2))) func aSilentDependencyTimesTheJobOut() async throws {
        let executor = NixExecutor(settings: NixSettings(options: NixTest.offlineOptions, killGrace: .seconds(2)))
        let marker = String(UInt64.random(in: 1_000_000_000...9_999_999_999))
        let report = try await withTemporaryDirectory("kiln-nix") { directory in
            var flake = TestFlake(packages: [
                "quiet\(marker)": "echo waiting-\(marker); $bb sleep \(marker); $bb mkdir $out", "top\(marker)": "$bb mkdir $out",
            ])
            flake.dependencies = ["top\(marker)": ["quiet\(marker)"]]
            try flake.write(to: directory.path)
            let job = flakeJob("top", ".#top\(marker)", in: directory, maxSilent: .seconds(2))
            return await executor.run(job, log: MemoryLog(), stop: StopSignal())
        }
        #expect(report.outcome == .timedOut(after: .seconds(2), silent: true))
        #expect(executor.daemons.idleProcesses.count == 1, "the job should have built with a kept daemon")
        try await eventually("the builder to be gone", within: .seconds(10)) { Processes.matching(marker).isEmpty }
        await executor.close()
    }

    /// Builds a derivation, copies its output (signed) to a binary cache in a directory and
    /// deletes it from the store; `body` gets the job, the derivation, the output, the cache's
    /// URL and the public key its signatures verify with.
    private func withCachedOutput(_ body: (TestJob, String, String, String, String) async throws -> Void) async throws {
        let marker = String(UInt64.random(in: 1_000_000_000...9_999_999_999))
        try await withTemporaryDirectory("kiln-substituter") { scratch in
            let cache = "file://" + scratch.appending("cache")
            try await withTemporaryDirectory("kiln-nix") { directory in
                try TestFlake(packages: ["cached\(marker)": "echo built-\(marker); $bb mkdir $out"]).write(to: directory.path)
                let job = flakeJob("cached", ".#cached\(marker)", in: directory)
                let builder = NixExecutor(settings: NixSettings(options: NixTest.offlineOptions, killGrace: .seconds(2)))
                let built = await builder.run(job, log: MemoryLog(), stop: StopSignal())
                await builder.close()
                #expect(built.outcome == .succeeded)
                let output = try #require(built.outputs.first?.path)
                let derivation = try #require(built.derivations.first)
                let (secretKey, publicKey) = (scratch.appending("secret-key"), scratch.appending("public-key"))
                _ = try runCommand("/usr/bin/nix-store", ["--generate-binary-cache-key", "kiln-test", secretKey, publicKey])
                _ = try runCommand(
                    "/usr/bin/nix", ["--extra-experimental-features", "nix-command", "copy", "--to", "\(cache)?secret-key=\(secretKey)", output])
                _ = try runCommand("/usr/bin/nix-store", ["--delete", output])
                #expect(!FileManager.default.fileExists(atPath: output))
                try await body(job, derivation, output, cache, try String(contentsOfFile: publicKey, encoding: .utf8))
            }
        }
    }

    /// The daemon's results give the exit code `nix-store --realise` would have exited with.
    @Test func resultsMapToRealisesExitCodes() {
        func code(_ statuses: UInt64...) -> Int32 {
            DaemonBuildResult.exitCode(statuses.map { DaemonBuildResult(status: $0, errorMessage: "") })
        }
        #expect(code(0, 1, 2) == 0)
        #expect(code(13) == 0, "a content-addressed derivation that resolved to a valid path succeeded")
        #expect(code(3) == 100)
        #expect(code(10) == 100)
        #expect(code(8) == 101)
        #expect(code(5) == 102)
        #expect(code(3, 8) == 101)
        #expect(code(12) == 104)
        #expect(DaemonBuildResult.exitCode([DaemonBuildResult(status: 10, errorMessage: "", dependencyTimedOut: true)]) == 101)
        #expect(code(9) == 1)
        #expect(code(0, 6) == 1)
    }
}

/// A job building `installable` of the test flake in `directory`, with a minute for it.
private func flakeJob(_ name: String, _ installable: String, in directory: TemporaryDirectory, maxSilent: Duration = .seconds(60)) -> TestJob {
    TestJob(
        name: name, target: .installables([installable]), workspace: directory.path, isPlainTree: true, timeout: .seconds(60),
        maxSilent: maxSilent)
}

@Suite struct NixDaemonStartTests {
    /// A daemon that cannot be started costs no job (it builds with nix-store, saying why), and
    /// after three failed starts in a row no more are tried.
    @Test func afterThreeFailedStartsNoMoreAreTried() async {
        let pool = NixDaemonPool()
        let tries = Locked(0)
        var answers: [String] = []
        for _ in 1...5 {
            let taken = await pool.take {
                tries.withLock { $0 += 1 }
                return .failure(DaemonError(description: "nix-daemon did not greet"))
            }
            guard case .failure(let problem) = taken else {
                Issue.record("a failed start gave a daemon")
                return
            }
            answers.append(problem.description)
        }
        #expect(tries.withLock { $0 } == 3)
        #expect(answers.prefix(3).allSatisfy { $0 == "nix-daemon did not greet" })
        #expect(answers.suffix(2).allSatisfy { $0 == "nix-daemon failed to start 3 times; not trying again" })
    }

    /// A program that answers something else, or nothing, is not taken for a daemon: starting
    /// fails (the job then builds with nix-store) and nothing is left running.
    @Test(.timeLimit(.minutes(1))) func aProgramThatDoesNotGreetIsRefused() async throws {
        try await withTemporaryDirectory("kiln-daemon-start") { directory in
            let silent = directory.appending("silent")
            try writeExecutable("#!/bin/sh\nexec /bin/sleep 600\n", to: silent)
            let echo = directory.appending("echo")
            try writeExecutable("#!/bin/sh\nexec /bin/cat\n", to: echo)
            for (program, expected) in [(echo, "nix-daemon did not greet"), (silent, "nix-daemon did not greet within 1 s")] {
                let home = directory.appending("home-\((program as NSString).lastPathComponent)")
                try FileManager.default.createDirectory(atPath: home, withIntermediateDirectories: true)
                do {
                    _ = try await NixDaemonConnection.start(
                        program, arguments: [], home: home, environment: ScrubbedEnvironment.variables(home: home),
                        greetingLimit: .seconds(1))
                    Issue.record("\(program) was taken for a daemon")
                } catch {
                    #expect("\(error)".contains(expected), "\(error)")
                }
                try await eventually("its home to be removed", within: .seconds(10)) { !FileManager.default.fileExists(atPath: home) }
            }
            #expect(Processes.matching(silent).isEmpty)
        }
    }
}
