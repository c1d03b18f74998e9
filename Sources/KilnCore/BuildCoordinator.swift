import Foundation
import Logging
import Synchronization

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
    /// Counters and histograms of what happens.
    public let metrics: KilnMetrics
    private let logger: Logger
    /// Changes whose events are derived by comparing before and after run one at a time, so
    /// that each transition is published once, in order.
    private let changes = SerialLock()
    /// When each running job last published its progress.
    private let progressTimes = ProgressTimes()

    /// Creates the coordinator of `store`.
    public init(
        store: any KilnStore, running: RunningJobs = RunningJobs(), bells: Doorbells = Doorbells(), metrics: KilnMetrics = .none,
        logger: Logger
    ) {
        self.store = store
        self.running = running
        self.bells = bells
        self.metrics = metrics
        self.logger = logger
    }

    // MARK: Intake

    /// Records a delivery's build (once per delivery id); a new build wakes the planner.
    public func accept(_ delivery: NewDelivery) async throws -> AcceptedBuild {
        let result = try await store.accept(delivery, at: Date())
        if result.isNew {
            bells.planning.ring()
            bells.events.ring()
        }
        return AcceptedBuild(buildID: result.buildID, isNew: result.isNew)
    }

    /// A new build of the newest build of `sha`, as a re-run; nil when Kiln never built it.
    public func rerun(
        sha: String, of build: BuildID? = nil, repository: RepositoryID, forge: String, deliveryID: String, failedOnly: Bool = false
    ) async throws -> AcceptedBuild? {
        guard
            let again = try await store.rerun(
                sha: sha, of: build, repository: repository, forge: forge, deliveryID: deliveryID, failedOnly: failedOnly, at: Date())
        else { return nil }
        if again.isNew {
            if let details = try? await store.buildDetails(again.buildID) { await publish(BuildEvents.between(nil, details)) }
            bells.planning.ring()
        }
        return AcceptedBuild(buildID: again.buildID, isNew: again.isNew)
    }

    /// Approves the exact head commit `sha` of a build waiting for approval, and queues it.
    public func approve(_ build: BuildID, sha: String, by approver: String) async throws -> ApprovalResult {
        let result = try await changing([build]) { try await store.approve(build, sha: sha, by: approver, at: Date()) }
        if case .approved = result { bells.planning.ring() }
        return result
    }

    // MARK: Cancelling

    /// Cancels unfinished builds: queued jobs and waiting builds end at once with their
    /// statuses; running jobs are asked to stop, and end cancelled. Returns the jobs stopped.
    @discardableResult
    public func cancel(_ builds: [BuildID], _ reason: CancelReason) async throws -> [JobID] {
        guard !builds.isEmpty else { return [] }
        let stopped = try await changing(builds) { try await store.cancel(builds, reason, at: Date()) }
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
        try await changing([build]) {
            try await Retrying.write("recording the plan of build \(build)", logger: logger) {
                try await store.finishPlanning(build, result, resolution: resolution, at: Date())
            }
        }
        bells.jobs.ring()
        bells.statuses.ring()
    }

    // MARK: Jobs

    /// Starts the oldest runnable job that fits in `freeMemory` bytes, and registers it as
    /// running here; its stop signal fires when its build is cancelled.
    public func claimJob(freeMemory: Int) async throws -> (job: ClaimedJob, stop: StopSignal)? {
        await changes.lock()
        defer { changes.unlock() }
        guard let claimed = try await store.claimRunnableJob(at: Date(), freeMemory: freeMemory) else { return nil }
        let job = claimed.job
        metrics.jobStarted(waited: (job.startedAt ?? job.queuedAt).timeIntervalSince(job.queuedAt))
        await publish([
            KilnEvent(
                type: "job.started", buildID: claimed.build.id, jobID: job.id, repository: claimed.build.repository,
                fields: ["name": job.name, "attempt": job.attempt])
        ])
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
        let owner = try await store.job(job)?.buildID
        // What nix built (and failed to build) comes before the job's end; read under the change
        // lock, so that a job the watchdog has ended meanwhile keeps that end and tells nothing.
        let postBuild = { (before: BuildDetails) -> [KilnEvent] in
            guard before.jobs.contains(where: { $0.id == job && !$0.state.isFinal }) else { return [] }
            metrics.derivations(report)
            return BuildEvents.postBuild(report, job: job, build: before.build.id, repository: before.build.repository)
        }
        let build = try await changing(owner.map { [$0] } ?? [], preceding: postBuild) {
            progressTimes.times.withLock { _ = $0.removeValue(forKey: job) }
            return try await Retrying.write("recording the end of job \(job)", logger: logger) {
                try await store.finishJob(job, report, details: details, at: Date())
            }
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
    public func recoverInterrupted(leasesEndedBy cutoff: Date = .distantFuture) async throws -> (builds: Int, jobs: Int) {
        let underWay = try await store.underWay()
        let recovered = try await changing(underWay) { try await store.recoverInterrupted(at: Date(), leasesEndedBy: cutoff) }
        try await store.releaseStatusClaims(endedBy: cutoff)
        bells.planning.ring()
        bells.statuses.ring()
        return recovered
    }

    /// Records what posting a status came to (posted, retried later, or given up).
    public func recordStatusDelivery(_ entry: OutboxEntry, _ result: StatusDeliveryResult) async throws {
        try await store.recordStatusDelivery(entry.id, result, at: Date())
        metrics.statusPost(forge: entry.forge, result)
        guard let event = BuildEvents.status(entry, result) else { return }
        await changes.lock()
        defer { changes.unlock() }
        await publish([event])
    }

    /// A running job's progress, published at most once a second per job.
    /// Returns at once; the event is written in the background when it is due.
    public func progress(_ progress: JobProgress, job: JobID, build: BuildID, repository: String) {
        let now = ContinuousClock.now
        let due = progressTimes.times.withLock { times -> Bool in
            if let last = times[job], now - last < .seconds(1) { return false }
            times[job] = now
            return true
        }
        guard due else { return }
        let event = BuildEvents.progress(progress, job: job, build: build, repository: repository)
        Task {
            await changes.lock()
            defer { changes.unlock() }
            // Not after the job's end: its finish forgets the job under the same lock.
            guard progressTimes.times.withLock({ $0[job] != nil }) else { return }
            await publish([event])
        }
    }

    /// Removes builds that ended before `date` (the caller removes the returned jobs' logs), and
    /// events older than `date` beyond the newest `eventsKept`.
    public func removeOld(endedBefore date: Date, eventsKept: Int) async throws -> (builds: Int, jobs: [JobID]) {
        let removed = try await store.removeBuilds(endedBefore: date)
        try await store.pruneEvents(olderThan: date, keep: eventsKept)
        return removed
    }

    // MARK: Events

    /// Publishes an event that concerns no build's lifecycle (the cache service's warm-up).
    public func note(_ event: KilnEvent) async {
        await changes.lock()
        defer { changes.unlock() }
        await publish([event])
    }

    /// Runs `change` to builds `builds` and publishes what `preceding` makes of each build as it
    /// was before, then what the change changed in them.
    private func changing<T>(
        _ builds: [BuildID], preceding: (BuildDetails) -> [KilnEvent] = { _ in [] }, _ change: () async throws -> T
    ) async rethrows -> T {
        await changes.lock()
        defer { changes.unlock() }
        var before: [BuildID: BuildDetails] = [:]
        for id in builds { before[id] = try? await store.buildDetails(id) }
        let result = try await change()
        var events = builds.compactMap { before[$0] }.flatMap(preceding)
        for id in builds {
            guard let after = try? await store.buildDetails(id) else { continue }
            events += BuildEvents.between(before[id], after)
            metrics.observe(before[id], after)
        }
        await publish(events)
        return result
    }

    /// Appends events to the log and wakes the streams; a failure costs the events, not the change.
    private func publish(_ events: [KilnEvent]) async {
        guard !events.isEmpty else { return }
        do {
            try await store.appendEvents(events, at: Date())
            bells.events.ring()
        } catch {
            logger.warning("could not record events", metadata: ["events": "\(events.map(\.type))", "error": "\(error)"])
        }
    }
}

/// A lock for async code: one holder at a time, the others wait in order.
final class SerialLock: Sendable {
    private let state = Mutex<(held: Bool, waiting: [CheckedContinuation<Void, Never>])>((false, []))

    /// Waits until this task holds the lock.
    func lock() async {
        await withCheckedContinuation { continuation in
            let now = state.withLock { state -> Bool in
                if !state.held {
                    state.held = true
                    return true
                }
                state.waiting.append(continuation)
                return false
            }
            if now { continuation.resume() }
        }
    }

    /// Lets the next waiter in (or frees the lock).
    func unlock() {
        let next = state.withLock { state -> CheckedContinuation<Void, Never>? in
            if state.waiting.isEmpty {
                state.held = false
                return nil
            }
            return state.waiting.removeFirst()
        }
        next?.resume()
    }
}

/// When each running job last published its progress.
private final class ProgressTimes: Sendable {
    let times = Mutex<[JobID: ContinuousClock.Instant]>([:])
}
