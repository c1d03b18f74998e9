import Foundation
import KilnPipeline

/// The life of one build, as a value: feed it an input, carry out the actions it returns, in order.
///
/// ```
/// queued ──claim──▶ planning ──planned──▶ running ──(its last job ends: BuildProgress)──▶ succeeded | failed | …
///                      ├──awaiting approval──▶ awaiting_approval ──approve──▶ queued
///                      ├──reused──▶ the earlier build's end
///                      └──skipped | invalid | errored──▶ skipped | failed | errored
/// ```
/// The store carries out the actions in one transaction; it decides nothing itself.
public struct BuildStateMachine: Sendable, Hashable {
    /// What the owner must do.
    public enum Action: Sendable, Hashable {
        /// Record the build's new state and summary (`diagnostics` for an invalid pipeline file);
        /// a final state records its end time too, `running` its start.
        case persist(BuildState, summary: String, diagnostics: [String])
        /// Queue these jobs, each with the summary its pending status gives.
        case queueJobs([QueuedJob])
        /// Copy the jobs of build `from`, each with its summary, and record the reuse.
        case reuseJobs(from: BuildID, summaries: [JobID: String])
        /// Copy these jobs of build `from` (with their results), each with its summary.
        case keepJobs(from: BuildID, summaries: [JobID: String])
        /// Enqueue these statuses, in order.
        case enqueue([StatusUpdate])
        /// End these queued jobs cancelled, with this summary.
        case cancelJobs([JobID], summary: String)
        /// Stop these running jobs; the build ends when they have (and, should Kiln die first,
        /// recovery ends them with `summary` instead of running them again).
        case stopJobs([JobID], summary: String)
        /// Record the running build's new summary (its state stays).
        case summarize(String)
        /// Record what planning resolved about the build's commits; later actions see it.
        case resolve(BuildResolution)
        /// Record the approval of a pull request's head commit.
        case recordApproval(pullRequest: Int, sha: String, approver: String)
        /// Start this queued job: running, one attempt more, its clock from now.
        case startJob(JobID, summary: String)
        /// End this job in `state`; with `report`, record what the executor reported.
        case endJob(JobID, JobState, summary: String, report: JobReport?)
        /// Queue these interrupted jobs again.
        case requeueJobs([JobID], summary: String)
        /// Record the derivations an evaluation found for these jobs.
        case recordDerivations([JobID: [String]])
        /// These running jobs' clocks (and so their timeouts) start again from now.
        case restartClocks([JobID])
    }

    /// The job `actions` start, if they start one.
    public static func startedJob(_ actions: [Action]) -> JobID? {
        for case .startJob(let job, _) in actions { return job }
        return nil
    }

    /// A job to queue and the summary it starts with.
    public struct QueuedJob: Sendable, Hashable {
        /// The job.
        public var job: PlannedJob
        /// Its summary (its pending status's description).
        public var summary: String
    }

    /// Current state.
    public internal(set) var state: BuildState
    /// Summary of the current state (the `kiln` status's description).
    public internal(set) var summary: String

    /// A machine in `state`.
    public init(state: BuildState, summary: String) {
        self.state = state
        self.summary = summary
    }

    /// A machine where `build` stands.
    public init(_ build: BuildRecord) {
        self.init(state: build.state, summary: build.summary)
    }

    /// The summary of a build just accepted.
    public static let acceptedSummary = "queued: fetching and reading the pipeline file"

    /// A worker takes the queued build to fetch and plan it.
    public mutating func claim() -> [Action] {
        precondition(state == .queued, "only a queued build is claimed for planning, not a \(state.rawValue) one")
        return move(.planning, "fetching and reading the pipeline file", status: nil)
    }

    /// Planning ended with `result`. A build that is no longer planning (it was cancelled
    /// meanwhile, or the watchdog ended it) stays as it is.
    public mutating func finishPlanning(_ result: PlanningResult, earlier: (build: BuildRecord, jobs: [JobRecord])? = nil)
        -> [Action]
    {
        guard state == .planning else { return [] }
        let kiln = StatusUpdate.buildContext
        switch result {
        case .planned(let jobs):
            let statuses = BuildProgress.plannedStatuses(jobs)
            state = .running
            summary = statuses[0].description
            return [
                .queueJobs(zip(jobs, statuses.dropFirst()).map { QueuedJob(job: $0, summary: $1.description) }),
                .persist(.running, summary: summary, diagnostics: []), .enqueue(statuses),
            ]
        case .reused(let earlierID):
            guard let earlier, earlier.build.id == earlierID, earlier.build.state.isFinal else {
                return finishPlanning(.errored("build #\(earlierID), whose results were to be reused, is gone"))
            }
            var summaries: [JobID: String] = [:]
            var statuses: [StatusUpdate] = []
            for job in earlier.jobs {
                let text = "reused from build #\(earlierID): \(job.summary)"
                summaries[job.id] = text
                statuses.append(StatusUpdate(context: job.context, state: Self.statusState(job.state), description: text))
            }
            state = earlier.build.state
            summary = "same tree and pipeline as build #\(earlierID): \(earlier.build.summary)"
            statuses.append(StatusUpdate(context: kiln, state: Self.statusState(state), description: summary))
            return [.reuseJobs(from: earlierID, summaries: summaries), .persist(state, summary: summary, diagnostics: []), .enqueue(statuses)]
        case .rerunFailed(let jobs, let original):
            guard let earlier, earlier.build.id == original else { return finishPlanning(.planned(jobs)) }
            let succeeded = Dictionary(
                earlier.jobs.filter { $0.state == .succeeded }.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
            let again = jobs.filter { succeeded[$0.name] == nil }
            // Nothing failed there: the re-run ends as that build did.
            guard !again.isEmpty else { return finishPlanning(.reused(original), earlier: earlier) }
            var summaries: [JobID: String] = [:]
            var kept: [StatusUpdate] = []
            for job in jobs {
                guard let result = succeeded[job.name] else { continue }
                let text = "kept from build #\(original): \(result.summary)"
                summaries[result.id] = text
                kept.append(StatusUpdate(context: result.context, state: .succeeded, description: text))
            }
            var actions = finishPlanning(.planned(again))
            if !summaries.isEmpty { actions = [.keepJobs(from: original, summaries: summaries)] + actions + [.enqueue(kept)] }
            return actions
        case .skipped(let reason, let announce):
            return move(.skipped, reason, status: announce ? .skipped : nil)
        case .awaitingApproval(let reason):
            return move(.awaitingApproval, reason, status: .pending)
        case .invalid(let text, let diagnostics):
            state = .failed
            summary = text
            return [
                .persist(.failed, summary: text, diagnostics: diagnostics),
                .enqueue([StatusUpdate(context: kiln, state: .failed, description: text)]),
            ]
        case .errored(let message):
            return move(.errored, message, status: .errored)
        }
    }

    /// Cancel the build, whose jobs are `jobs`. Queued jobs end at once; running ones are
    /// stopped, and the build ends with the last of them. An ended build stays as it is.
    public mutating func cancel(_ reason: CancelReason, jobs: [JobRecord]) -> [Action] {
        guard !state.isFinal else { return [] }
        var job = JobStateMachine(state: .queued)
        guard case .report(let status, let description) = job.apply(.cancel(reason)) else {
            preconditionFailure("a queued job always ends when cancelled")
        }
        let queued = jobs.filter { $0.state == .queued }
        let running = jobs.filter { $0.state == .running }
        var actions: [Action] = []
        if !queued.isEmpty { actions.append(.cancelJobs(queued.map(\.id), summary: description)) }
        var statuses = queued.map { StatusUpdate(context: $0.context, state: status, description: description) }
        if running.isEmpty {
            // Nothing left to wait for: the build ends here.
            state = .cancelled
            summary = description
            actions.append(.persist(.cancelled, summary: description, diagnostics: []))
            statuses.append(StatusUpdate(context: StatusUpdate.buildContext, state: status, description: description))
        } else {
            actions.append(.stopJobs(running.map(\.id), summary: description))
        }
        if !statuses.isEmpty { actions.append(.enqueue(statuses)) }
        return actions
    }

    private mutating func move(_ next: BuildState, _ text: String, status: StatusState?) -> [Action] {
        state = next
        summary = text
        var actions: [Action] = [.persist(next, summary: text, diagnostics: [])]
        if let status { actions.append(.enqueue([StatusUpdate(context: StatusUpdate.buildContext, state: status, description: text)])) }
        return actions
    }

    /// The status that reports a final job state.
    public static func statusState(_ state: JobState) -> StatusState {
        switch state {
        case .succeeded: return .succeeded
        case .failed, .timedOut: return .failed
        case .errored: return .errored
        case .cancelled, .skipped, .queued, .running: return .cancelled
        }
    }

    /// The status that reports a final build state.
    public static func statusState(_ state: BuildState) -> StatusState {
        switch state {
        case .succeeded: return .succeeded
        case .failed: return .failed
        case .errored: return .errored
        case .skipped: return .skipped
        case .cancelled, .queued, .planning, .running, .awaitingApproval: return .cancelled
        }
    }
}
