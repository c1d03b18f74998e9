import KilnPipeline
import Synchronization

/// One job to build: derivations its build's evaluation found for it.
public struct JobRun: Sendable, Hashable {
    /// Job name, for log lines.
    public var name: String
    /// The derivations to realise (none: the job succeeds at once).
    public var derivations: [String]
    /// Wall-clock limit, enforced by Kiln.
    public var timeout: Duration
    /// Limit on time without output.
    public var maxSilent: Duration
    /// Push the outputs to the binary cache after a successful build.
    public var pushToCache: Bool
    /// Where each derivation's own log goes; nil to keep only the job's log.
    public var derivationLogDirectory: String?
    /// Those of `derivations` that were not in the store when the build was evaluated; nil when
    /// not known. What the job does not build of them itself, another job built meanwhile.
    public var missing: [String]?
    /// Output paths of derivations, as far as the evaluation learnt them.
    public var knownOutputs: [String: [String]]
    /// Push the output as an image after a successful build.
    public var image: ImagePush?
    /// What the build needs of the sandbox.
    public var constraints = BuildConstraints()
    /// Push the outputs' closure to a Cachix cache after a successful build; a failed push fails the job.
    public var cachix: CachixPush?
    /// An ad-hoc build's options for nix (`cores`, `max-jobs`, `keep-going`).
    public var buildOptions = AdHocBuildOptions()

    /// Creates a run.
    public init(
        name: String, derivations: [String], timeout: Duration, maxSilent: Duration, pushToCache: Bool = false,
        derivationLogDirectory: String? = nil, missing: [String]? = nil, knownOutputs: [String: [String]] = [:]
    ) {
        self.missing = missing
        self.knownOutputs = knownOutputs
        self.name = name
        self.derivations = derivations
        self.timeout = timeout
        self.maxSilent = maxSilent
        self.pushToCache = pushToCache
        self.derivationLogDirectory = derivationLogDirectory
    }
}

/// The jobs of one build and system to evaluate together, in one checked-out tree.
public struct EvaluationRequest: Sendable, Hashable {
    /// A job and what it builds.
    public struct Job: Sendable, Hashable {
        /// Its name (the key of its result).
        public var name: String
        /// What it builds.
        public var target: JobTarget

        /// Creates a job.
        public init(name: String, target: JobTarget) {
            self.name = name
            self.target = target
        }
    }

    /// The jobs.
    public var jobs: [Job]
    /// The system to evaluate for; nil for the machine's own.
    public var system: String?
    /// The checked-out tree.
    public var workspace: String
    /// True when the workspace is a plain tree (a server checkout), false for a user's own git
    /// checkout (`kiln run`). A plain tree may sit inside some other git repository; its
    /// installables must then be read from the tree itself, not through that repository.
    public var isPlainTree: Bool
    /// What an earlier evaluation of the same tree and pipeline found, if one did: used instead
    /// of evaluating again when every derivation is still in the store.
    public var recorded: RecordedEvaluation?

    /// Creates a request.
    public init(jobs: [Job], system: String? = nil, workspace: String, isPlainTree: Bool, recorded: RecordedEvaluation? = nil) {
        self.jobs = jobs
        self.system = system
        self.workspace = workspace
        self.isPlainTree = isPlainTree
        self.recorded = recorded
    }
}

/// Derivations an earlier evaluation recorded, by job name.
public struct RecordedEvaluation: Sendable, Hashable {
    /// Where they come from, for the log ("build #12").
    public var source: String
    /// Job name → derivations.
    public var derivations: [String: [String]]

    /// Creates a record.
    public init(source: String, derivations: [String: [String]]) {
        self.source = source
        self.derivations = derivations
    }
}

/// What one job's evaluation came to.
public enum EvaluationResult: Sendable, Hashable {
    /// The derivations to build.
    case derivations([String])
    /// It failed (or was stopped): how the job ends, and nix's own messages for its log.
    case failed(JobOutcome, log: String)
}

/// What evaluating a build's jobs found, and what it cost.
public struct EvaluationReport: Sendable, Hashable {
    /// Each job's result, by name.
    public var results: [String: EvaluationResult]
    /// One line for the logs: how the derivations were found.
    public var summary: String
    /// Wall-clock time.
    public var duration: Duration
    /// CPU seconds of the evaluating processes.
    public var cpuSeconds: Double?
    /// Largest resident memory of an evaluating process.
    public var peakMemoryKilobytes: Int?
    /// The derivations found whose outputs were not all in the store when the evaluation
    /// ended; nil when not known.
    public var missing: Set<String>?
    /// The output paths of the derivations found, when known.
    public var outputs: [String: [String]] = [:]

    /// The derivations of `job` that were not in the store at evaluation, when known.
    public func missing(of job: String) -> [String]? {
        guard let missing, case .derivations(let derivations)? = results[job] else { return nil }
        return derivations.filter(missing.contains)
    }

    /// Creates a report.
    public init(
        results: [String: EvaluationResult], summary: String, duration: Duration, cpuSeconds: Double? = nil,
        peakMemoryKilobytes: Int? = nil
    ) {
        self.results = results
        self.summary = summary
        self.duration = duration
        self.cpuSeconds = cpuSeconds
        self.peakMemoryKilobytes = peakMemoryKilobytes
    }

    /// The same outcome for every job of `request`; `message` goes to each job's log.
    public static func all(_ request: EvaluationRequest, _ outcome: JobOutcome, log message: String) -> EvaluationReport {
        EvaluationReport(
            results: Dictionary(request.jobs.map { ($0.name, .failed(outcome, log: message + "\n")) }, uniquingKeysWith: { a, _ in a }),
            summary: message, duration: .zero)
    }
}

/// Whether an executor may build.
public enum Readiness: Sendable, Hashable {
    /// Ready; the detail says what was checked (`nix 2.8.0, sandbox on, fallback off`).
    case ready(String)
    /// Not ready; the detail says why and what to do.
    case notReady(String)
}

/// Asks a running job to stop. Safe to use from any task.
public final class StopSignal: Sendable {
    private let state = Mutex<CancelReason?>(nil)

    /// A signal that has not fired.
    public init() {}

    /// Asks the job to stop; the first reason wins.
    public func request(_ reason: CancelReason) {
        state.withLock { current in
            if current == nil { current = reason }
        }
    }

    /// The reason, once requested.
    public var reason: CancelReason? { state.withLock { $0 } }
}

/// Runs jobs. The real one is `NixExecutor`; tests may substitute their own.
public protocol Executor: Sendable {
    /// Checks that building is possible and safe (for nix: the sandbox is enforced).
    /// Called at start-up; Kiln builds nothing unless it returns `.ready`.
    func readiness() async -> Readiness

    /// Evaluates every job of a request together (once, not once per job), confined to its
    /// tree; a job whose evaluation fails gets its own error, and the others their derivations.
    /// Never throws; returns promptly after `stop` fires, having stopped what it started.
    func evaluate(_ request: EvaluationRequest, log: any LogSink, stop: StopSignal) async -> EvaluationReport

    /// Builds one job's derivations to its end and reports how it ended; never throws.
    /// Output goes to `log` as it arrives. Returns promptly after `stop` fires or the
    /// calling task is cancelled, having stopped every process the job started.
    func run(_ job: JobRun, log: any LogSink, stop: StopSignal) async -> JobReport

    /// Ends every process that jobs of a previous life of Kiln left running (Kiln was killed
    /// before it could stop them); returns how many were running. Called at start-up, before
    /// interrupted jobs are queued again, so that no job runs twice at once.
    func endLeftoverProcesses() async -> Int
}
