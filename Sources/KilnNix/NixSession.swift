import Foundation
import KilnCore
import Synchronization

/// The nix processes of one job or one evaluation: where they run, under which limits, and
/// what they cost together.
struct NixSession {
    let log: any LogSink
    let stop: StopSignal
    let deadline: ContinuousClock.Instant
    let workingDirectory: String
    /// The jail evaluations run in, and the private home every nix process gets.
    let jail: EvaluationJail
    let home: String
    let nixDirectories: [String]
    let mark: ProcessMark?
    /// `NIX_SSHOPTS`, for the remote builders' ssh; empty for none.
    var sshOptions: [String] = []
    var cpuSeconds: Double?
    var peakKilobytes: Int?

    var environment: [String: String] {
        var variables = ScrubbedEnvironment.variables(home: home)
        if let mark { variables[mark.variable] = mark.value }
        if !sshOptions.isEmpty { variables["NIX_SSHOPTS"] = sshOptions.joined(separator: " ") }
        return variables
    }

    /// Removes the private home.
    func close() { try? FileManager.default.removeItem(atPath: home) }

    /// Runs one nix process before the session's deadline (and within `maxSilent`, for builds;
    /// `maxResidentKilobytes`, for evaluations) and adds up what it cost.
    /// `confined` processes evaluate, so they run in the evaluation jail; the others (building,
    /// signing, copying) run nix's own sandbox or no repository code at all. All of them get the
    /// scrubbed environment. `errorLine` gets each line of standard error.
    mutating func process(
        _ executable: String, _ arguments: [String], killGrace: Duration, maxSilent: Duration? = nil,
        maxResidentKilobytes: Int? = nil, confined: Bool = true, errorLine: @escaping @Sendable (ArraySlice<UInt8>) -> Void
    ) async throws -> ProcessEnd {
        let argv =
            confined
            ? jail.command(
                executable, arguments, workspace: workingDirectory, home: home, nixDirectories: nixDirectories,
                environment: environment)
            : [executable] + arguments
        let ended = try await SupervisedProcess(
            executable: argv[0], arguments: Array(argv.dropFirst()), environment: environment,
            workingDirectory: workingDirectory, deadline: deadline, maxSilent: maxSilent,
            maxResidentKilobytes: maxResidentKilobytes, killGrace: killGrace
        ).run(log: log, stop: stop, errorLine: errorLine)
        if let cpu = ended.cpuSeconds { cpuSeconds = (cpuSeconds ?? 0) + cpu }
        peakKilobytes = max(peakKilobytes ?? 0, ended.peakKilobytes)
        return ended
    }
}

extension NixSession {
    /// Builds `paths` (`drv!out,…`) with a kept nix-daemon under the session's limits, as
    /// `process` runs a nix process, and adds up what it cost: the daemon's CPU meanwhile (with
    /// the builders it reaped) and the largest resident memory of its tree. Its standard output
    /// on success is `outputs`, one per line, as `nix-store --realise` prints them; a failed
    /// derivation's error ends the log, as nix's does.
    mutating func build(
        on daemon: NixDaemonConnection, _ paths: [String], settings: DaemonBuildSettings, nixMaxSilent: Duration,
        maxSilent: Duration, killGrace: Duration, outputs: [String], errorLine: @escaping @Sendable (ArraySlice<UInt8>) -> Void
    ) async -> ProcessEnd {
        let pid = daemon.pid
        let cpuBefore = ProcessTree.cpuSeconds(pid)
        let sampler = MemorySampler(pid)
        let tail = Locked<[UInt8]>([])
        let line: @Sendable (ArraySlice<UInt8>) -> Void = { line in
            errorLine(line)
            tail.withLock { SupervisedProcess.keep(line, inTail: &$0) }
        }
        let limits = ProcessLimits(deadline: deadline, maxSilent: maxSilent, maxResident: nil)
        let (log, stop) = (self.log, self.stop)
        let noticed = Locked<StopCause?>(nil)
        // Not a child task: a job cancelled at shutdown asks its stop signal to end the daemon,
        // and the watchdog must live on to do it.
        let watchdog = Task {
            await SupervisedProcess.watch(
                pid, limits: limits, stop: stop, lastOutput: { daemon.lastMessage }, sampler: sampler, grace: killGrace, log: log,
                noticed: { cause in noticed.withLock { $0 = cause } })
        }
        var results: [DaemonBuildResult]?
        var failure: (any Error)?
        do {
            results = try await daemon.build(
                paths, settings: settings, maxSilentSeconds: UInt64(max(1, nixMaxSilent.components.seconds)), line: line)
        } catch {
            failure = error
        }
        // The watchdog stays while it is ending the daemon.
        if noticed.withLock({ $0 }) == nil { watchdog.cancel() }
        _ = await watchdog.value
        let peak = sampler.stop()
        peakKilobytes = max(peakKilobytes ?? 0, peak)
        // The daemon's CPU is added to the session here, not returned (as `process` returns a process's).
        func end(_ exitCode: Int32?, stopCause: StopCause? = nil, output: [String] = []) -> ProcessEnd {
            ProcessEnd(
                exitCode: exitCode, stopCause: stopCause, standardOutput: Array(output.map { $0 + "\n" }.joined().utf8),
                errorTail: tail.withLock { $0 }, cpuSeconds: nil, peakKilobytes: peak)
        }
        func error(_ message: String) { line(DaemonWire.message("\u{1B}[31;1merror:\u{1B}[0m " + message)) }
        if let cause = noticed.withLock({ $0 }) { return end(nil, stopCause: cause) }
        if let before = cpuBefore, let after = ProcessTree.cpuSeconds(pid) { cpuSeconds = (cpuSeconds ?? 0) + max(0, after - before) }
        guard let results else {
            // An error the daemon answered with is nix's error, as `nix-store` would print it
            // before exiting with 1; a daemon that ended is a nix killed by a signal.
            error((failure as? DaemonError)?.description ?? "\(failure.map { "\($0)" } ?? "no answer")")
            return end((failure as? DaemonError)?.fromDaemon == true ? 1 : nil)
        }
        for result in results where !result.succeeded { error(result.errorMessage) }
        let exitCode = DaemonBuildResult.exitCode(results)
        return end(exitCode, output: exitCode == 0 ? outputs : [])
    }
}
