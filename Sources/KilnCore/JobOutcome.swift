/// Why a job was cancelled.
public enum CancelReason: Sendable, Hashable {
    /// Someone asked (API).
    case requested
    /// A newer commit on the same branch replaced this build.
    case superseded(by: String)
    /// Kiln is shutting down; the job is re-run at the next start.
    case shutdown
}

/// How one job run ended. Every ending is a value; nothing here is thrown.
public enum JobOutcome: Sendable, Hashable {
    /// nix built every installable.
    case succeeded
    /// Evaluation or the build failed; `reason` is the tail of nix's error.
    case failed(exitCode: Int32, reason: String)
    /// Stopped after `after`: wall clock, or without output when `silent`.
    case timedOut(after: Duration, silent: Bool)
    /// Stopped on request.
    case cancelled(CancelReason)
    /// Kiln's own infrastructure failed (nix missing, unexpected exit).
    case errored(String)
}

/// What the executor reports after a job run.
public struct JobReport: Sendable, Hashable {
    /// How it ended.
    public var outcome: JobOutcome
    /// nix's exit code when it exited on its own.
    public var exitCode: Int32?
    /// Store paths built.
    public var outputs: [String]
    /// Wall-clock time the job ran.
    public var duration: Duration

    /// Creates a report.
    public init(outcome: JobOutcome, exitCode: Int32? = nil, outputs: [String] = [], duration: Duration) {
        self.outcome = outcome
        self.exitCode = exitCode
        self.outputs = outputs
        self.duration = duration
    }
}
