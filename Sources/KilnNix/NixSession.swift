import Foundation
import KilnCore

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
