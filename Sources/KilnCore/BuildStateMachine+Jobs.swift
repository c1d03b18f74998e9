import Foundation
import KilnPipeline

/// A running build's jobs start and end; a restart, an approval and the evaluation move it too.
extension BuildStateMachine {
    /// `job`, one of the build's `jobs` (as they stand before), starts. The first job to start
    /// also moves the build's summary to its evaluation.
    public mutating func startJob(_ job: JobRecord, of jobs: [JobRecord]) -> [Action] {
        precondition(state == .running, "a job starts only in a running build, not a \(state.rawValue) one")
        var machine = JobStateMachine(state: job.state, summary: job.summary)
        precondition(machine.apply(.start) == .run, "only a queued job starts, not a \(job.state.rawValue) one")
        var actions: [Action] = [.startJob(job.id, summary: machine.summary)]
        let statuses = BuildProgress.startedStatuses(job, of: jobs)
        if let phase = statuses.first(where: { $0.context == StatusUpdate.buildContext }) {
            summary = phase.description
            actions.append(.summarize(phase.description))
        }
        actions.append(.enqueue(statuses))
        return actions
    }

    /// Job `jobID` of `build` (whose jobs are `jobs`, as they stand before) ended with `report`;
    /// `details` is the markdown account for forges that show one. Skips what can no longer run
    /// and concludes the build when every job has ended. A job that has already ended (the
    /// watchdog ended it, or recovery did) keeps that end.
    public mutating func finishJob(
        _ jobID: JobID, _ report: JobReport, details: String?, build: BuildRecord, jobs: [JobRecord], at now: Date
    ) -> [Action] {
        guard let index = jobs.firstIndex(where: { $0.id == jobID }) else {
            preconditionFailure("job \(jobID) is not a job of build \(build.id)")
        }
        let job = jobs[index]
        var machine = JobStateMachine(state: job.state, summary: job.summary, allowFailure: job.allowFailure)
        guard case .report(let status, let description) = machine.apply(.finish(report)) else { return [] }
        var ended = jobs
        ended[index].state = machine.state
        ended[index].summary = description
        return [
            .endJob(jobID, machine.state, summary: description, report: report),
            .enqueue([StatusUpdate(context: job.context, state: status, description: description, details: details)]),
        ] + afterJobsEnded(build, jobs: ended, at: now)
    }

    /// After a restart, for a build that was under way: planning starts again; running jobs are
    /// queued again, or, in a build cancelled while they ran, end cancelled.
    public mutating func recover(_ build: BuildRecord, jobs: [JobRecord], at now: Date, leasesEndedBy cutoff: Date = .distantFuture)
        -> [Action]
    {
        // Only what no living instance holds: a lease that ended before `cutoff` (or none).
        func lapsed(_ until: Date?) -> Bool { (until ?? .distantPast) < cutoff }
        switch state {
        case .planning:
            guard lapsed(build.leaseUntil) else { return [] }
            state = .queued
            summary = "queued again: Kiln restarted while planning it"
            return [.persist(.queued, summary: summary, diagnostics: [])]
        case .running:
            let running = jobs.filter { $0.state == .running && lapsed($0.leaseUntil) }
            guard !running.isEmpty else { return [] }
            guard let reason = build.cancelReason else {
                var machine = JobStateMachine(state: .running)
                _ = machine.apply(.requeue)
                return [.requeueJobs(running.map(\.id), summary: machine.summary)]
            }
            var ended = jobs
            var actions: [Action] = []
            let lapsedJobs = Set(running.map(\.id))
            for index in ended.indices where lapsedJobs.contains(ended[index].id) {
                ended[index].state = .cancelled
                ended[index].summary = reason
                actions.append(.endJob(ended[index].id, .cancelled, summary: reason, report: nil))
            }
            actions.append(.enqueue(running.map { StatusUpdate(context: $0.context, state: .cancelled, description: reason) }))
            return actions + afterJobsEnded(build, jobs: ended, at: now)
        case .queued, .awaitingApproval, .succeeded, .failed, .errored, .cancelled, .skipped:
            return []
        }
    }

    /// While the build runs: its summary says what it does now; `derivations` (by job name)
    /// records what its evaluation found, after which its running jobs' clocks start again.
    public mutating func notePhase(_ text: String, derivations: [String: [String]], jobs: [JobRecord]) -> [Action] {
        guard state == .running else { return [] }
        var actions: [Action] = []
        let unfinished = jobs.filter { !$0.state.isFinal }
        var found: [JobID: [String]] = [:]
        for job in unfinished { found[job.id] = derivations[job.name] }
        if !found.isEmpty { actions.append(.recordDerivations(found)) }
        let running = unfinished.filter { $0.state == .running }.map(\.id)
        if !derivations.isEmpty, !running.isEmpty {
            // The evaluation is over: the jobs waiting for it start building now, and their
            // timeouts count from here.
            actions.append(.restartClocks(running))
        }
        if text != summary {
            summary = text
            actions += [
                .summarize(text), .enqueue([StatusUpdate(context: StatusUpdate.buildContext, state: .running, description: text)]),
            ]
        }
        return actions
    }

    /// An administrator approves commit `sha` of the pull request `build` waits for.
    public mutating func approve(_ build: BuildRecord, sha: String, by approver: String) -> (ApprovalResult, [Action]) {
        guard state == .awaitingApproval, let pullRequest = build.pullRequest else { return (.notAwaiting(state), []) }
        guard build.sha == sha else { return (.differentCommit(current: build.sha), []) }
        state = .queued
        summary = "approved by \(approver); queued"
        var approved = build
        approved.state = state
        approved.summary = summary
        return (
            .approved(approved),
            [
                .recordApproval(pullRequest: pullRequest.number, sha: sha, approver: approver),
                .persist(.queued, summary: summary, diagnostics: []),
            ]
        )
    }

    /// The summary of a build that runs `original` again.
    public static func rerunSummary(of original: BuildID) -> String { "queued again: a re-run of build #\(original)" }

    /// The summary of a build that runs again what did not succeed in `original`.
    public static func rerunFailedSummary(of original: BuildID) -> String {
        "queued again: a re-run of what failed in build #\(original)"
    }

    /// After jobs ended (already reflected in `jobs`): skip what can no longer run, and
    /// conclude the build when every job has ended.
    private mutating func afterJobsEnded(_ build: BuildRecord, jobs: [JobRecord], at now: Date) -> [Action] {
        var current = build
        current.state = state
        let update = BuildProgress.afterJobEnded(current, jobs: jobs, now: now)
        var actions = update.jobChanges.map { Action.endJob($0.jobID, $0.state, summary: $0.summary, report: nil) }
        if !update.statuses.isEmpty { actions.append(.enqueue(update.statuses)) }
        if let change = update.build {
            state = change.state
            summary = change.summary
            actions.append(.persist(change.state, summary: change.summary, diagnostics: []))
        }
        return actions
    }
}
