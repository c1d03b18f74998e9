import Foundation
import KilnCore
import KilnPipeline
import Subprocess
import Synchronization

#if canImport(System)
    import System
#else
    import SystemPackage
#endif

/// Why Kiln stopped a process before it ended on its own.
enum StopCause: Sendable, Equatable {
    case deadline
    case silence
    /// The process tree's resident memory passed this many KiB.
    case memory(Int)
    case requested(CancelReason)
}

/// How a supervised process ended, and what it cost.
struct ProcessEnd: Sendable {
    /// Exit code, when it exited (rather than dying of a signal).
    var exitCode: Int32?
    /// Why Kiln stopped it, if it did.
    var stopCause: StopCause?
    /// Standard output (capped); standard error went to the log.
    var standardOutput: [UInt8]
    /// The last few KiB of what was logged, for the error message.
    var errorTail: [UInt8]
    /// User and system CPU seconds of the process and every child it waited for (builders).
    var cpuSeconds: Double?
    /// Largest resident memory of the process tree together, sampled every 100 ms.
    var peakKilobytes: Int
}

/// Runs one command in its own process group under Kiln's limits: a wall-clock deadline,
/// a silence limit and a stop signal. Each line of standard error goes to `errorLine`.
struct SupervisedProcess {
    var executable: String
    var arguments: [String]
    /// The whole environment of the process: nothing of Kiln's own is inherited.
    var environment: [String: String]
    var workingDirectory: String
    var deadline: ContinuousClock.Instant
    /// Longest time without output; nil for none (evaluation may be silent for long).
    var maxSilent: Duration?
    /// Largest resident memory of the process tree (sampled); nil for no limit.
    var maxResidentKilobytes: Int? = nil
    var killGrace: Duration

    private static let outputCap = 4 << 20
    private static let tailCap = 8 << 10

    /// Runs the process. `errorLine` receives each line of standard error without its newline
    /// and returns the bytes it logged (kept as the error tail).
    func run(
        log: any LogSink, stop: StopSignal, errorLine: @escaping @Sendable (ArraySlice<UInt8>) -> Void
    ) async throws -> ProcessEnd {
        var options = PlatformOptions()
        options.processGroupID = 0
        // Used only if this task is cancelled mid-run (shutdown): let nix clean up its builders.
        options.teardownSequence = [.send(signal: .interrupt, toProcessGroup: true, allowedDurationToNextStep: killGrace)]
        let watch = Watch()
        let grace = killGrace
        let limits = ProcessLimits(deadline: deadline, maxSilent: maxSilent, maxResident: maxResidentKilobytes)

        // The process dies with Kiln (SIGKILL when the thread that started it ends), so it is
        // started from a thread that lives as long as Kiln: pool threads exit when idle.
        let (launcher, launchArguments) = ParentDeath.wrap(executable, arguments)
        let result = try await withTaskExecutorPreference(SpawnThread.shared) {
            try await Subprocess.run(
                .path(FilePath(launcher)), arguments: Arguments(launchArguments),
                environment: ScrubbedEnvironment.subprocess(environment),
                workingDirectory: FilePath(workingDirectory), platformOptions: options,
                input: .none, output: .sequence, error: .sequence
            ) { execution -> [UInt8] in
                // Sampling starts here, on the spawning thread, right after the spawn: a short
                // process may be over before a busy shared pool runs the rest.
                let pid = execution.processIdentifier.value
                let sampler = MemorySampler(pid)
                defer { watch.peakKilobytes.withLock { $0 = sampler.stop() } }
                // The streams are read on the shared pool; only the spawn needs the thread.
                return try await withTaskExecutorPreference(globalConcurrentExecutor) {
                    let output = try await withThrowingTaskGroup(of: Finished.self) { group in
                        group.addTask {
                            var pending: [UInt8] = []
                            for try await chunk in execution.standardError {
                                watch.lastOutput.withLock { $0 = .now }
                                pending += chunk.withUnsafeBytes { Array($0) }
                                while let newline = pending.firstIndex(of: 0x0A) {
                                    Self.handle(pending[..<newline], errorLine, watch)
                                    pending.removeSubrange(...newline)
                                }
                            }
                            if !pending.isEmpty { Self.handle(pending[...], errorLine, watch) }
                            return .standardError
                        }
                        group.addTask {
                            var collected: [UInt8] = []
                            for try await chunk in execution.standardOutput {
                                watch.lastOutput.withLock { $0 = .now }
                                if collected.count < Self.outputCap { collected += chunk.withUnsafeBytes { Array($0) } }
                            }
                            return .standardOutput(collected)
                        }
                        // Watchdog: enforces the limits until the streams end.
                        group.addTask {
                            if let cause = await Self.watch(
                                pid, limits: limits, stop: stop, lastOutput: { watch.lastOutput.withLock { $0 } }, sampler: sampler,
                                grace: grace, log: log)
                            {
                                watch.stopCause.withLock { $0 = cause }
                            }
                            return .watchdog
                        }
                        // Both streams end when nix (and anything holding its pipes) has exited;
                        // the watchdog is then no longer needed.
                        var output: [UInt8] = []
                        var streamsOpen = 2
                        while streamsOpen > 0, let finished = try await group.next() {
                            switch finished {
                            case .standardOutput(let bytes):
                                output = bytes
                                streamsOpen -= 1
                            case .standardError:
                                streamsOpen -= 1
                            case .watchdog:
                                break
                            }
                        }
                        group.cancelAll()
                        return output
                    }
                    // Not yet reaped: the zombie still holds the CPU time of nix and its builders.
                    watch.cpuSeconds.withLock { $0 = ProcessTree.cpuSecondsOnceExited(pid) }
                    return output
                }
            }
        }
        let exitCode: Int32?
        if case .exited(let code) = result.terminationStatus { exitCode = code } else { exitCode = nil }
        return ProcessEnd(
            exitCode: exitCode, stopCause: watch.stopCause.withLock { $0 }, standardOutput: result.closureResult,
            errorTail: watch.errorTail.withLock { $0 }, cpuSeconds: watch.cpuSeconds.withLock { $0 },
            peakKilobytes: watch.peakKilobytes.withLock { $0 })
    }

    private static func handle(
        _ line: ArraySlice<UInt8>, _ errorLine: @Sendable (ArraySlice<UInt8>) -> Void, _ watch: Watch
    ) {
        errorLine(line)
        watch.errorTail.withLock { keep(line, inTail: &$0) }
    }

    /// Adds `line` to `tail`, which keeps the last few KiB of what nix logged.
    static func keep(_ line: ArraySlice<UInt8>, inTail tail: inout [UInt8]) {
        tail.append(contentsOf: line)
        tail.append(0x0A)
        if tail.count > tailCap * 2 { tail.removeFirst(tail.count - tailCap) }
    }

    /// Which child task of a run finished.
    private enum Finished: Sendable {
        case standardOutput([UInt8])
        case standardError
        case watchdog
    }

    /// State shared by the stream readers and the watchdog.
    private final class Watch: Sendable {
        let lastOutput = Mutex(ContinuousClock.now)
        let stopCause = Mutex<StopCause?>(nil)
        let errorTail = Mutex<[UInt8]>([])
        let peakKilobytes = Mutex(0)
        let cpuSeconds = Mutex<Double?>(nil)
    }

    /// Checks `limits` and `stop` every 100 ms until cancelled; when one is passed, ends `pid`'s
    /// process group and returns why.
    static func watch(
        _ pid: pid_t, limits: ProcessLimits, stop: StopSignal, lastOutput: @Sendable () -> ContinuousClock.Instant,
        sampler: MemorySampler, grace: Duration, log: any LogSink, noticed: @Sendable (StopCause) -> Void = { _ in }
    ) async -> StopCause? {
        while !Task.isCancelled {
            let now = ContinuousClock.now
            let cause: StopCause?
            if let reason = stop.reason {
                cause = .requested(reason)
            } else if now >= limits.deadline {
                cause = .deadline
            } else if let maxSilent = limits.maxSilent, now - lastOutput() >= maxSilent {
                cause = .silence
            } else if let maxResident = limits.maxResident, sampler.peak > maxResident {
                cause = .memory(maxResident)
            } else {
                cause = nil
            }
            if let cause {
                noticed(cause)
                log.note(Self.describe(cause) + "; sending SIGINT to nix")
                // In a task of its own: the watchdog may be cancelled meanwhile (the process
                // ended as the limit came), and a cancelled wait would spin through the grace.
                await Task { await Self.terminate(pid, grace: grace, log: log) }.value
                return cause
            }
            try? await Task.sleep(for: .milliseconds(100))
        }
        return nil
    }

    /// SIGINT to the process group, then after `grace` SIGKILL to every descendant.
    static func terminate(_ pid: pid_t, grace: Duration, log: any LogSink) async {
        kill(-pid, SIGINT)
        let until = ContinuousClock.now + grace
        while ContinuousClock.now < until {
            if !ProcessTree.isAlive(pid) { return }
            try? await Task.sleep(for: .milliseconds(50))
        }
        log.note("nix did not stop within \(HumanDuration.format(grace)) of SIGINT; killing it and its builders")
        ProcessTree.killAll(pid)
    }

    static func describe(_ cause: StopCause) -> String {
        switch cause {
        case .deadline: return "wall-clock limit reached"
        case .silence: return "no output for too long"
        case .memory(let kilobytes): return "resident memory passed \(ByteCount.format(kilobytes * 1024))"
        case .requested(let reason):
            switch reason {
            case .requested: return "cancelled"
            case .superseded(let sha): return "superseded by \(CommitID.short(sha))"
            case .shutdown: return "Kiln is shutting down"
            case .pullRequestClosed(let merged): return merged ? "the pull request was merged" : "the pull request was closed"
            }
        }
    }
}

/// What a watchdog holds a running nix to.
struct ProcessLimits: Sendable {
    var deadline: ContinuousClock.Instant
    /// Longest time without output; nil for none.
    var maxSilent: Duration?
    /// Largest resident memory of the process tree, in KiB; nil for no limit.
    var maxResident: Int?
}

/// Samples the resident memory of a process tree every 100 ms on a thread of its own, so
/// that busy task threads cannot starve the measurement.
final class MemorySampler: @unchecked Sendable {
    private let largest = Mutex(0)
    private let stopped = DispatchSemaphore(value: 0)
    private let finished = DispatchSemaphore(value: 0)

    /// Samples `pid`'s tree: once at once (a short process may end before the thread runs),
    /// then every 100 ms.
    init(_ pid: pid_t) {
        largest.withLock { $0 = ProcessTree.residentKilobytes(of: pid) }
        let thread = Thread { [self] in
            repeat {
                let resident = ProcessTree.residentKilobytes(of: pid)
                largest.withLock { $0 = max($0, resident) }
            } while stopped.wait(timeout: .now() + .milliseconds(100)) == .timedOut
            finished.signal()
        }
        thread.start()
    }

    /// Stops sampling (once) and returns the largest sample.
    func stop() -> Int {
        stopped.signal()
        finished.wait()
        return peak
    }

    /// The largest sample so far.
    var peak: Int { largest.withLock { $0 } }
}

