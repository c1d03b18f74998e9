/// Why a job was cancelled.
public enum CancelReason: Sendable, Hashable {
    /// Someone asked (API).
    case requested
    /// A newer commit on the same branch replaced this build.
    case superseded(by: String)
    /// Kiln is shutting down; the job is re-run at the next start.
    case shutdown
    /// The pull request was closed or merged.
    case pullRequestClosed(merged: Bool)
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

/// One output a job built, as `nix path-info` describes it.
public struct BuiltOutput: Sendable, Hashable, Codable {
    /// Output name (`out`, `dev`, …).
    public var name: String
    /// Store path.
    public var path: String
    /// `sha256-…` hash of the NAR serialisation; nil when nix did not say.
    public var narHash: String?
    /// Size of the NAR serialisation in bytes; nil when nix did not say.
    public var narSize: Int64?

    /// Creates an output.
    public init(name: String, path: String, narHash: String? = nil, narSize: Int64? = nil) {
        self.name = name
        self.path = path
        self.narHash = narHash
        self.narSize = narSize
    }
}

/// What became of pushing a job's outputs to the binary cache.
public enum CachePushResult: Sendable, Hashable {
    /// Signed and copied.
    case pushed(to: String, attempts: Int)
    /// Not pushed: the build is not trusted, or the server has no cache.
    case notPushed(String)
    /// Every attempt failed; the last error.
    case failed(String, attempts: Int)

    /// A sentence for pages and the API.
    public var summary: String {
        switch self {
        case .pushed(let destination, let attempts):
            return "pushed to \(destination)" + (attempts > 1 ? " after \(attempts) attempts" : "")
        case .notPushed(let reason): return "not pushed: \(reason)"
        case .failed(let error, let attempts): return "push failed after \(attempts) attempts: \(error)"
        }
    }

    /// `pushed`, `not_pushed` or `failed`: a metric label.
    public var outcomeLabel: String {
        switch self {
        case .pushed: return "pushed"
        case .notPushed: return "not_pushed"
        case .failed: return "failed"
        }
    }
}

/// What the executor reports after a job run: how it ended and what it cost.
public struct JobReport: Sendable, Hashable {
    /// How it ended.
    public var outcome: JobOutcome
    /// nix's exit code when it exited on its own.
    public var exitCode: Int32?
    /// Derivations the job's installables evaluated to.
    public var derivations: [String]
    /// Outputs built.
    public var outputs: [BuiltOutput]
    /// Wall-clock time the job ran.
    public var duration: Duration
    /// User and system CPU time of every process the job ran, builders included.
    public var cpuSeconds: Double?
    /// Largest resident memory of the job's processes together, sampled while it ran.
    public var peakMemoryKilobytes: Int?
    /// Binary cache push, when the job asked for one.
    public var cache: CachePushResult?
    /// Derivations this job's nix built itself.
    public var built: [String]
    /// Derivations of the job that were not in the store when it started, that another job or
    /// build was building, and that this job waited for instead of building them again.
    public var waitedFor: [String]
    /// The outputs of each derivation in `built`.
    public var builtOutputs: [String: [String]] = [:]
    /// Derivations whose builder failed.
    public var failedDerivations: [String] = []
    /// Store paths nix fetched from a substituter (a binary cache) for this job.
    public var substituted: Int = 0
    /// The image push, when the job has an image.
    public var image: ImagePushResult?
    /// NAR bytes of the closure pushed to the binary cache, when a push succeeded.
    public var cachePushedBytes: Int64?
    /// Largest size of the builds' temporary directories together, sampled while nix built.
    public var peakStorageKilobytes: Int?
    /// The remote builders (`nix.builders`, their URIs without query) that built any of `built`.
    public var machines: [String] = []

    /// Creates a report.
    public init(
        outcome: JobOutcome, exitCode: Int32? = nil, derivations: [String] = [], outputs: [BuiltOutput] = [],
        duration: Duration, cpuSeconds: Double? = nil, peakMemoryKilobytes: Int? = nil, cache: CachePushResult? = nil,
        built: [String] = [], waitedFor: [String] = [], builtOutputs: [String: [String]] = [:], failedDerivations: [String] = []
    ) {
        self.builtOutputs = builtOutputs
        self.failedDerivations = failedDerivations
        self.built = built
        self.waitedFor = waitedFor
        self.outcome = outcome
        self.exitCode = exitCode
        self.derivations = derivations
        self.outputs = outputs
        self.duration = duration
        self.cpuSeconds = cpuSeconds
        self.peakMemoryKilobytes = peakMemoryKilobytes
        self.cache = cache
    }
}
