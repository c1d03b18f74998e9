import Foundation
import KilnCore
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
    case requested(CancelReason)
}

/// How a supervised process ended.
struct ProcessEnd: Sendable {
    /// Exit code, when it exited (rather than dying of a signal).
    var exitCode: Int32?
    /// Why Kiln stopped it, if it did.
    var stopCause: StopCause?
    /// Standard output (capped); stderr went to the log.
    var standardOutput: [UInt8]
    /// The last few KiB of standard error, for the error message.
    var errorTail: [UInt8]
}

/// Runs one command in its own process group under Kiln's limits: a wall-clock deadline,
/// a silence limit and a stop signal. Standard error streams to the job log.
struct SupervisedProcess {
    var executable: String
    var arguments: [String]
    var workingDirectory: String
    var deadline: ContinuousClock.Instant
    var maxSilent: Duration
    var killGrace: Duration

    private static let outputCap = 4 << 20
    private static let tailCap = 8 << 10

    func run(log: any LogSink, stop: StopSignal) async throws -> ProcessEnd {
        var options = PlatformOptions()
        options.processGroupID = 0
        // Used only if this task is cancelled mid-run (shutdown): let nix clean up its builders.
        options.teardownSequence = [.send(signal: .interrupt, toProcessGroup: true, allowedDurationToNextStep: killGrace)]
        let watch = Watch()
        let grace = killGrace
        let limits = (deadline: deadline, maxSilent: maxSilent)

        let result = try await Subprocess.run(
            .path(FilePath(executable)), arguments: Arguments(arguments),
            workingDirectory: FilePath(workingDirectory), platformOptions: options,
            input: .none, output: .sequence, error: .sequence
        ) { execution -> [UInt8] in
            let pid = execution.processIdentifier.value
            return try await withThrowingTaskGroup(of: Finished.self) { group in
                group.addTask {
                    for try await chunk in execution.standardError {
                        let bytes = chunk.withUnsafeBytes { Array($0) }
                        watch.lastOutput.withLock { $0 = .now }
                        watch.errorTail.withLock { tail in
                            tail.append(contentsOf: bytes)
                            if tail.count > Self.tailCap * 2 { tail.removeFirst(tail.count - Self.tailCap) }
                        }
                        log.write(bytes)
                    }
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
                // Watchdog: ends when both streams have closed (the group is cancelled then).
                group.addTask {
                    while !Task.isCancelled {
                        let now = ContinuousClock.now
                        let cause: StopCause?
                        if let reason = stop.reason {
                            cause = .requested(reason)
                        } else if now >= limits.deadline {
                            cause = .deadline
                        } else if now - watch.lastOutput.withLock({ $0 }) >= limits.maxSilent {
                            cause = .silence
                        } else {
                            cause = nil
                        }
                        if let cause {
                            watch.stopCause.withLock { $0 = cause }
                            log.note(Self.describe(cause) + "; sending SIGINT to nix")
                            await Self.terminate(pid, grace: grace, log: log)
                            return .watchdog
                        }
                        try? await Task.sleep(for: .milliseconds(100))
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
        }
        let exitCode: Int32?
        if case .exited(let code) = result.terminationStatus { exitCode = code } else { exitCode = nil }
        return ProcessEnd(
            exitCode: exitCode, stopCause: watch.stopCause.withLock { $0 }, standardOutput: result.closureResult,
            errorTail: watch.errorTail.withLock { $0 })
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
        case .requested(let reason):
            switch reason {
            case .requested: return "cancelled"
            case .superseded(let sha): return "superseded by \(CommitID.short(sha))"
            case .shutdown: return "Kiln is shutting down"
            }
        }
    }
}
