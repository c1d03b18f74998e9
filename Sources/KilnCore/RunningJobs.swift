import Synchronization

/// The jobs this process is running, so that cancelling a build (superseded, pull request
/// closed, API) can stop its nix processes.
///
/// A job is claimed in the store before it registers here; a stop that arrives in between is
/// kept and fires the moment the job registers, so a job cancelled while it is being claimed or
/// checked out never runs to its end.
public final class RunningJobs: Sendable {
    private struct State {
        var signals: [JobID: StopSignal] = [:]
        /// Stops for jobs not registered yet, oldest first (bounded: a stop for a job that had
        /// just ended is never collected otherwise).
        var early: [(JobID, CancelReason)] = []
    }

    private let state = Mutex(State())
    private static let earlyCap = 1024

    /// No jobs.
    public init() {}

    /// Registers a starting job; returns its stop signal, already fired if a stop came first.
    public func start(_ job: JobID) -> StopSignal {
        let signal = StopSignal()
        let reason = state.withLock { state -> CancelReason? in
            state.signals[job] = signal
            guard let index = state.early.firstIndex(where: { $0.0 == job }) else { return nil }
            return state.early.remove(at: index).1
        }
        if let reason { signal.request(reason) }
        return signal
    }

    /// The jobs running here now.
    public func registered() -> Set<JobID> { state.withLock { Set($0.signals.keys) } }

    /// Forgets a job that ended.
    public func end(_ job: JobID) { _ = state.withLock { $0.signals.removeValue(forKey: job) } }

    /// Asks these jobs to stop: those running here at once, the others when they register.
    public func stop(_ jobs: [JobID], _ reason: CancelReason) {
        let found = state.withLock { state in
            jobs.compactMap { job -> StopSignal? in
                if let signal = state.signals[job] { return signal }
                state.early.append((job, reason))
                if state.early.count > Self.earlyCap { state.early.removeFirst(state.early.count - Self.earlyCap) }
                return nil
            }
        }
        for signal in found { signal.request(reason) }
    }
}
