import Synchronization

/// One evaluation per build and system, shared by the build's jobs: the first of them to start
/// runs it, the others wait for its report. A build's entries go when the build ends.
public final class BuildEvaluations: Sendable {
    /// A build and the system its jobs build for.
    public struct Key: Sendable, Hashable {
        /// The build.
        public var build: BuildID
        /// The system; nil for the machine's own.
        public var system: String?

        /// Creates a key.
        public init(build: BuildID, system: String?) {
            self.build = build
            self.system = system
        }
    }

    private let evaluations = Mutex<[Key: Task<EvaluationReport, Never>]>([:])
    /// Builds whose end went unseen (cancelled while no job ran) leave entries; past this many,
    /// the oldest builds' go.
    private static let kept = 256

    /// No evaluations yet.
    public init() {}

    /// The report of `key`'s evaluation: `evaluate`'s, when this caller is the first to ask
    /// (`ranHere` true), or the first caller's.
    public func report(_ key: Key, evaluate: @escaping @Sendable () async -> EvaluationReport) async
        -> (report: EvaluationReport, ranHere: Bool)
    {
        let (task, ranHere) = evaluations.withLock { evaluations in
            if let running = evaluations[key] { return (running, false) }
            let task = Task { await evaluate() }
            evaluations[key] = task
            if evaluations.count > Self.kept {
                let others = evaluations.keys.filter { $0 != key }.sorted { $0.build < $1.build }
                for old in others.prefix(evaluations.count - Self.kept) {
                    evaluations[old] = nil
                }
            }
            return (task, true)
        }
        return (await task.value, ranHere)
    }

    /// Forgets the evaluations of `build` (it ended, or its evaluation must run again).
    public func forget(_ build: BuildID) {
        evaluations.withLock { evaluations in
            for key in evaluations.keys where key.build == build { evaluations[key] = nil }
        }
    }
}
