import Foundation
import Logging

/// The one place a build's lifecycle moves: every store write, every stop of a running job and
/// every doorbell goes through here. Intake, the planner, the worker, the watchdog, the status
/// reporter and the control API ask it; none of them writes or rings on its own. Whatever must
/// see every transition (events, metrics) hooks in here once.
public struct BuildCoordinator: Sendable {
    /// The database: its reads are open to all; its writes are made here only.
    public let store: any KilnStore
    /// Running jobs, stopped when their build is cancelled or superseded.
    public let running: RunningJobs
    /// The doorbells the worker and the status reporter wait on.
    public let bells: Doorbells
    private let logger: Logger

    /// Creates the coordinator of `store`.
    public init(store: any KilnStore, running: RunningJobs = RunningJobs(), bells: Doorbells = Doorbells(), logger: Logger) {
        self.store = store
        self.running = running
        self.bells = bells
        self.logger = logger
    }

    // MARK: Intake

    /// Records a delivery's build (once per delivery id); a new build wakes the planner.
    public func accept(_ delivery: NewDelivery) async throws -> AcceptedBuild {
        let result = try await store.accept(delivery, at: Date())
        if result.isNew { bells.planning.ring() }
        return AcceptedBuild(buildID: result.buildID, isNew: result.isNew)
    }

    /// A new build of the newest build of `sha`, as a re-run; nil when Kiln never built it.
    public func rerun(sha: String, repository: RepositoryID, forge: String, deliveryID: String) async throws -> AcceptedBuild? {
        guard let again = try await store.rerun(sha: sha, repository: repository, forge: forge, deliveryID: deliveryID, at: Date())
        else { return nil }
        if again.isNew { bells.planning.ring() }
        return AcceptedBuild(buildID: again.buildID, isNew: again.isNew)
    }

    /// Approves the exact head commit `sha` of a build waiting for approval, and queues it.
    public func approve(_ build: BuildID, sha: String, by approver: String) async throws -> ApprovalResult {
        let result = try await store.approve(build, sha: sha, by: approver, at: Date())
        if case .approved = result { bells.planning.ring() }
        return result
    }

    // MARK: Cancelling

    /// Cancels unfinished builds: queued jobs and waiting builds end at once with their
    /// statuses; running jobs are asked to stop, and end cancelled. Returns the jobs stopped.
    @discardableResult
    public func cancel(_ builds: [BuildID], _ reason: CancelReason) async throws -> [JobID] {
        guard !builds.isEmpty else { return [] }
        let stopped = try await store.cancel(builds, reason, at: Date())
        running.stop(stopped, reason)
        bells.statuses.ring()
        bells.jobs.ring()
        return stopped
    }

    /// Cancels the unfinished builds of a closed (or merged) pull request; returns how many.
    public func closePullRequest(_ number: Int, merged: Bool, repository: RepositoryID) async throws -> Int {
        let builds = try await store.unfinishedBuilds(.pullRequest(number), repository: repository, olderThan: .max)
        try await cancel(builds.map(\.id), .pullRequestClosed(merged: merged))
        return builds.count
    }

    // MARK: Planning

    /// Moves the oldest queued build of a repository not in `busy` to planning.
    public func claimBuildToPlan(excluding busy: Set<RepositoryID>) async throws -> BuildRecord? {
        try await store.claimBuildToPlan(excluding: busy)
    }

    /// Records a build's plan (retrying a busy database), queues its jobs or ends it, and
    /// wakes the worker and the status reporter.
    public func finishPlanning(_ build: BuildID, _ result: PlanningResult, resolution: BuildResolution?) async throws {
        try await Retrying.write("recording the plan of build \(build)", logger: logger) {
            try await store.finishPlanning(build, result, resolution: resolution, at: Date())
        }
        bells.jobs.ring()
        bells.statuses.ring()
    }

    // MARK: Jobs

    /// Starts the oldest runnable job that fits in `freeMemory` bytes, and registers it as
    /// running here; its stop signal fires when its build is cancelled.
    public func claimJob(freeMemory: Int) async throws -> (job: ClaimedJob, stop: StopSignal)? {
        guard let claimed = try await store.claimRunnableJob(at: Date(), freeMemory: freeMemory) else { return nil }
        bells.statuses.ring()
        return (claimed, running.start(claimed.job.id))
    }

    /// Records what a running build is doing (and what its evaluation found).
    public func notePhase(_ build: BuildID, _ summary: String, derivations: [String: [String]]) async {
        do {
            try await store.noteBuildPhase(build, summary, derivations: derivations, at: Date())
            bells.statuses.ring()
        } catch {
            logger.warning("could not record the build's phase", metadata: ["build.id": "\(build)", "error": "\(error)"])
        }
    }

    /// Records a job's end (retrying a busy database), concludes its build if it is over, and
    /// wakes the worker and the status reporter. Returns the build as it now stands.
    @discardableResult
    public func finishJob(_ job: JobID, _ report: JobReport, details: String?) async throws -> BuildRecord {
        let build = try await Retrying.write("recording the end of job \(job)", logger: logger) {
            try await store.finishJob(job, report, details: details, at: Date())
        }
        bells.jobs.ring()
        bells.statuses.ring()
        return build
    }

    /// A job that this process ran has ended (or was left to run again after a restart).
    public func forgetRunning(_ job: JobID) { running.end(job) }

    // MARK: Restarts, the watchdog, statuses

    /// After a restart: builds that were planning are queued again, interrupted jobs too (those
    /// of cancelled builds end cancelled).
    public func recoverInterrupted() async throws -> (builds: Int, jobs: Int) {
        let recovered = try await store.recoverInterrupted(at: Date())
        bells.planning.ring()
        bells.statuses.ring()
        return recovered
    }

    /// Records what posting a status came to (posted, retried later, or given up).
    public func recordStatusDelivery(_ entry: Int64, _ result: StatusDeliveryResult) async throws {
        try await store.recordStatusDelivery(entry, result, at: Date())
    }
}
