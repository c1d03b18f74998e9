import Synchronization

/// How far a running job's build has come, from nix's own counts.
public struct JobProgress: Sendable, Hashable {
    /// Derivations built so far.
    public var done = 0
    /// Derivations to build in all.
    public var expected = 0
    /// Derivations that failed.
    public var failed = 0
    /// The derivation being built now (its name), if one is.
    public var building: String?

    /// No progress yet.
    public init() {}

    /// `3/7 derivations, building hello-1.0`.
    public var summary: String {
        var text = "\(done)/\(expected) derivation\(expected == 1 ? "" : "s")"
        if failed > 0 { text += ", \(failed) failed" }
        if let building { text += ", building \(building)" }
        return text
    }
}

/// The progress of running jobs, for pages; entries disappear when jobs end.
public final class ProgressBoard: Sendable {
    private let entries = Mutex<[JobID: JobProgress]>([:])

    /// An empty board.
    public init() {}

    /// Records a job's progress.
    public func update(_ job: JobID, _ progress: JobProgress) { entries.withLock { $0[job] = progress } }

    /// Forgets a job.
    public func remove(_ job: JobID) { _ = entries.withLock { $0.removeValue(forKey: job) } }

    /// A job's progress, while it runs.
    public func progress(_ job: JobID) -> JobProgress? { entries.withLock { $0[job] } }
}
