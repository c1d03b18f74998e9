import Synchronization

/// The jobs this process is running, so that cancelling a build (superseded, pull request
/// closed, API) can stop its nix processes.
public final class RunningJobs: Sendable {
    private let signals = Mutex<[JobID: StopSignal]>([:])

    /// No jobs.
    public init() {}

    /// Registers a starting job; returns its stop signal.
    public func start(_ job: JobID) -> StopSignal {
        let signal = StopSignal()
        signals.withLock { $0[job] = signal }
        return signal
    }

    /// Forgets a job that ended.
    public func end(_ job: JobID) { _ = signals.withLock { $0.removeValue(forKey: job) } }

    /// Asks these jobs to stop, where they run here.
    public func stop(_ jobs: [JobID], _ reason: CancelReason) {
        let found = signals.withLock { signals in jobs.compactMap { signals[$0] } }
        for signal in found { signal.request(reason) }
    }
}
