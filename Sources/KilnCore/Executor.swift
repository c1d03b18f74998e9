import KilnPipeline
import Synchronization

/// One job to run in a workspace.
public struct JobRun: Sendable, Hashable {
    /// Job name, for log lines.
    public var name: String
    /// What to build.
    public var target: JobTarget
    /// The system to build for; nil for the machine's own.
    public var system: String?
    /// The checked-out tree to run in.
    public var workspace: String
    /// True when the workspace is a plain tree (a server checkout), false for a user's own git
    /// checkout (`kiln run`). A plain tree may sit inside some other git repository; its
    /// installables must then be read from the tree itself, not through that repository.
    public var isPlainTree: Bool
    /// Wall-clock limit, enforced by Kiln.
    public var timeout: Duration
    /// Limit on time without output.
    public var maxSilent: Duration
    /// Push the outputs to the binary cache after a successful build.
    public var pushToCache: Bool
    /// Where each derivation's own log goes; nil to keep only the job's log.
    public var derivationLogDirectory: String?

    /// Creates a run.
    public init(
        name: String, target: JobTarget, system: String? = nil, workspace: String, isPlainTree: Bool, timeout: Duration,
        maxSilent: Duration, pushToCache: Bool = false, derivationLogDirectory: String? = nil
    ) {
        self.name = name
        self.target = target
        self.system = system
        self.workspace = workspace
        self.isPlainTree = isPlainTree
        self.timeout = timeout
        self.maxSilent = maxSilent
        self.pushToCache = pushToCache
        self.derivationLogDirectory = derivationLogDirectory
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

    /// Runs one job to its end and reports how it ended; never throws.
    /// Output goes to `log` as it arrives. Returns promptly after `stop` fires or the
    /// calling task is cancelled, having stopped every process the job started.
    func run(_ job: JobRun, log: any LogSink, stop: StopSignal) async -> JobReport

    /// Ends every process that jobs of a previous life of Kiln left running (Kiln was killed
    /// before it could stop them); returns how many were running. Called at start-up, before
    /// interrupted jobs are queued again, so that no job runs twice at once.
    func endLeftoverProcesses() async -> Int
}
