import Foundation
import KilnPipeline

/// A status Kiln wants posted, before the outbox adds where it links to.
public struct StatusUpdate: Sendable, Hashable, Codable {
    /// `kiln` or `kiln/<job>`.
    public var context: String
    /// The state.
    public var state: StatusState
    /// The description.
    public var description: String
    /// A markdown account for forges that show one (GitHub check runs).
    public var details: String?

    /// Creates an update.
    public init(context: String, state: StatusState, description: String, details: String? = nil) {
        self.context = context
        self.state = state
        self.description = description
        self.details = details
    }

    /// The aggregate context.
    public static let buildContext = "kiln"
}

/// Pure decisions about a build as its jobs move: what runs next, what is skipped,
/// when the build is over, and which statuses to post. The store applies the result
/// in the same transaction that read the jobs, so concurrent finishes stay consistent.
public enum BuildProgress {
    /// A job's new state and the final status to post for it.
    public struct JobChange: Sendable, Hashable {
        /// The job.
        public var jobID: JobID
        /// Its new state.
        public var state: JobState
        /// Its summary (also the status description).
        public var summary: String
    }

    /// The build's new state and summary.
    public struct BuildChange: Sendable, Hashable {
        /// New state.
        public var state: BuildState
        /// New summary (the aggregate status description).
        public var summary: String
    }

    /// Everything that follows from one event.
    public struct Update: Sendable, Hashable {
        /// Jobs that change state (beyond the one that triggered the update).
        public var jobChanges: [JobChange] = []
        /// The build's change, when it ends.
        public var build: BuildChange?
        /// Statuses to enqueue, in order.
        public var statuses: [StatusUpdate] = []
    }

    /// The statuses to post when a build's jobs are first known: all pending.
    public static func plannedStatuses(_ jobs: [PlannedJob]) -> [StatusUpdate] {
        let count = jobs.count == 1 ? "1 job" : "\(jobs.count) jobs"
        return [StatusUpdate(context: StatusUpdate.buildContext, state: .pending, description: "\(count) queued")]
            + jobs.map { job in
                StatusUpdate(
                    context: "kiln/\(job.name)", state: .pending,
                    description: job.needs.isEmpty ? "queued" : "waiting for \(job.needs.joined(separator: ", "))")
            }
    }

    /// The statuses to post when `job` starts: it runs, and so does the build when it is the
    /// first of `jobs` (the build's jobs before the start) to start; the first start evaluates
    /// the build's jobs.
    public static func startedStatuses(_ job: JobRecord, of jobs: [JobRecord]) -> [StatusUpdate] {
        let running = [StatusUpdate(context: job.context, state: .running, description: "building")]
        guard jobs.allSatisfy({ $0.state == .queued }) else { return running }
        let count = jobs.count == 1 ? "1 job" : "\(jobs.count) jobs"
        return [StatusUpdate(context: StatusUpdate.buildContext, state: .running, description: "evaluating \(count)")] + running
    }

    /// Jobs whose `needs` are all satisfied and that are still queued, in id order.
    public static func runnable(_ jobs: [JobRecord]) -> [JobRecord] {
        let byName = Dictionary(jobs.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
        return jobs.filter { job in
            job.state == .queued && job.needs.allSatisfy { byName[$0]?.satisfiesNeeds == true }
        }.sorted { $0.id < $1.id }
    }

    /// After a job ended (already reflected in `jobs`): skip the queued jobs that can no
    /// longer run, transitively, and conclude the build when every job has ended.
    public static func afterJobEnded(_ build: BuildRecord, jobs: [JobRecord], now: Date) -> Update {
        var jobs = jobs
        var update = Update()
        var changed = true
        while changed {
            changed = false
            let byName = Dictionary(jobs.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
            for index in jobs.indices where jobs[index].state == .queued {
                guard
                    let blocker = jobs[index].needs.compactMap({ byName[$0] }).first(where: {
                        $0.state.isFinal && !$0.satisfiesNeeds
                    })
                else { continue }
                var machine = JobStateMachine(state: .queued)
                guard case .report(let status, let description) = machine.apply(
                    .dependencyDidNotSucceed(name: blocker.name, state: blocker.state))
                else { continue }
                jobs[index].state = machine.state
                jobs[index].summary = description
                update.jobChanges.append(JobChange(jobID: jobs[index].id, state: machine.state, summary: description))
                update.statuses.append(StatusUpdate(context: jobs[index].context, state: status, description: description))
                changed = true
            }
        }
        if build.state == .running, jobs.allSatisfy(\.state.isFinal) {
            let (state, status, description) = conclusion(jobs, startedAt: build.startedAt ?? build.createdAt, now: now)
            update.build = BuildChange(state: state, summary: description)
            update.statuses.append(StatusUpdate(context: StatusUpdate.buildContext, state: status, description: description))
        }
        return update
    }

    /// The build's outcome once every job has ended.
    static func conclusion(_ jobs: [JobRecord], startedAt: Date, now: Date) -> (BuildState, StatusState, String) {
        let allowed = jobs.filter { $0.allowFailure && $0.satisfiesNeeds && $0.state != .succeeded }
        let counted = jobs.filter { !allowed.contains($0) }
        let failed = counted.filter { $0.state == .failed || $0.state == .timedOut }
        let errored = counted.filter { $0.state == .errored }
        let cancelled = counted.filter { $0.state == .cancelled }
        func names(_ jobs: [JobRecord]) -> String { jobs.map(\.name).joined(separator: ", ") }
        if failed.count == 1 {
            return (.failed, .failed, "\(failed[0].name): \(failed[0].summary)")
        }
        if !failed.isEmpty {
            return (.failed, .failed, "\(failed.count) of \(jobs.count) jobs failed: \(names(failed))")
        }
        if let first = errored.first {
            return (.errored, .errored, "\(first.name): \(first.summary)")
        }
        if let first = cancelled.first {
            return (.cancelled, .cancelled, first.summary)
        }
        let took = HumanDuration.format(.seconds(max(0, now.timeIntervalSince(startedAt))))
        if !allowed.isEmpty {
            let built = jobs.count - allowed.count
            return (.succeeded, .succeeded, "\(built) of \(jobs.count) jobs built in \(took); allowed to fail: \(names(allowed))")
        }
        let count = jobs.count == 1 ? "1 job" : "all \(jobs.count) jobs"
        return (.succeeded, .succeeded, "\(count) built in \(took)")
    }
}
