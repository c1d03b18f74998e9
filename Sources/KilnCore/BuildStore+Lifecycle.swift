import Foundation
import KilnPipeline

/// The lifecycle of builds, as the state machines decide it, each step one of the store's
/// transactions. `BuildCoordinator` calls these; nothing else that writes should.
extension BuildStore {
    /// Moves the oldest queued build of a repository not in `busy` to planning and returns it;
    /// nil when none waits.
    public func claimBuildToPlan(excluding busy: Set<RepositoryID> = [], at now: Date = Date()) async throws -> BuildRecord? {
        try await claimBuild(excluding: busy, at: now) { build in
            var machine = BuildStateMachine(build)
            return machine.claim()
        }
    }

    /// Ends planning: records what was resolved, queues the jobs (or ends the build), and
    /// enqueues the statuses this implies. A build no longer planning stays as it is.
    public func finishPlanning(_ id: BuildID, _ result: PlanningResult, resolution: BuildResolution?, at now: Date) async throws {
        var earlier: BuildID?
        if case .reused(let earlierID) = result { earlier = earlierID }
        if case .rerunFailed(_, let original) = result { earlier = original }
        _ = try await change(id, reading: earlier, at: now) { snapshot, earlier in
            guard snapshot.build.state == .planning else { return ([], ()) }
            var machine = BuildStateMachine(snapshot.build)
            let actions = machine.finishPlanning(result, earlier: earlier.map { ($0.build, $0.jobs) })
            return ((resolution.map { [.resolve($0)] } ?? []) + actions, ())
        }
    }

    /// Starts the oldest queued job whose needs are satisfied and whose `min-memory` fits in
    /// `freeMemory` bytes; nil when none can start.
    public func claimRunnableJob(at now: Date, freeMemory: Int) async throws -> ClaimedJob? {
        try await claimJob(at: now) { snapshot in
            guard let job = BuildProgress.runnable(snapshot.jobs).first(where: { ($0.minMemory ?? 0) <= freeMemory }) else {
                return []
            }
            var machine = BuildStateMachine(snapshot.build)
            return machine.startJob(job, of: snapshot.jobs)
        }
    }

    /// Records a job's end (with a markdown account for forges that show one), skips what
    /// can no longer run, concludes the build if it is over, and enqueues the statuses.
    /// Returns the build as it now stands.
    public func finishJob(_ jobID: JobID, _ report: JobReport, details: String?, at now: Date) async throws -> BuildRecord {
        guard let job = try await job(jobID),
            let (build, _) = try await change(job.buildID, reading: nil, at: now, { [owner = lease.owner] snapshot, _ in
                // A report from an instance that lost the job (its lease lapsed: queued again, or
                // taken over by another instance) changes nothing.
                if let current = snapshot.jobs.first(where: { $0.id == jobID }),
                    current.state == .queued || (current.state == .running && current.owner != nil && current.owner != owner)
                {
                    return ([], ())
                }
                var machine = BuildStateMachine(snapshot.build)
                let actions = machine.finishJob(
                    jobID, report, details: details, build: snapshot.build, jobs: snapshot.jobs, at: now)
                return (actions, ())
            })
        else { throw BuildStoreError.missing("job \(jobID)") }
        return build
    }

    /// While a running build evaluates or builds: its summary, and the `kiln` status, say so.
    /// `derivations` (by job name) records what an evaluation found for the build's jobs; the
    /// build's running jobs then start their clocks again.
    public func noteBuildPhase(_ id: BuildID, _ summary: String, derivations: [String: [String]], at now: Date) async throws {
        _ = try await change(id, reading: nil, at: now) { snapshot, _ in
            var machine = BuildStateMachine(snapshot.build)
            return (machine.notePhase(summary, derivations: derivations, jobs: snapshot.jobs), ())
        }
    }

    /// After a restart: builds that were planning are queued again, running jobs are re-queued
    /// (those of a build cancelled while they ran end cancelled). Returns how many builds and
    /// jobs were queued again.
    ///
    /// With `leasesEndedBy`, only what no instance holds past that time: planning builds and
    /// running jobs whose lease ended (what a dead instance held). Without, everything under way
    /// (one instance, at its start).
    public func recoverInterrupted(at now: Date, leasesEndedBy cutoff: Date = .distantFuture) async throws -> (builds: Int, jobs: Int) {
        var builds = 0
        var jobs = 0
        for id in try await underWay() {
            let recovered = try await change(id, reading: nil, at: now) { snapshot, _ in
                var machine = BuildStateMachine(snapshot.build)
                let actions = machine.recover(snapshot.build, jobs: snapshot.jobs, at: now, leasesEndedBy: cutoff)
                return (actions, actions)
            }
            for action in recovered?.decision ?? [] {
                switch action {
                case .persist(.queued, _, _): builds += 1
                case .requeueJobs(let requeued, _): jobs += requeued.count
                default: break
                }
            }
        }
        return (builds, jobs)
    }

    /// Cancels unfinished builds: queued jobs and waiting builds end cancelled with their
    /// statuses posted. Returns the running jobs, which the caller stops.
    public func cancel(_ builds: [BuildID], _ reason: CancelReason, at now: Date) async throws -> [JobID] {
        var stopped: [JobID] = []
        for id in builds {
            let result = try await change(id, reading: nil, at: now) { snapshot, _ in
                var machine = BuildStateMachine(snapshot.build)
                let actions = machine.cancel(reason, jobs: snapshot.jobs)
                var running: [JobID] = []
                for case .stopJobs(let jobs, _) in actions { running += jobs }
                return (actions, running)
            }
            stopped += result?.decision ?? []
        }
        return stopped
    }

    /// Approves the exact head commit a waiting build waits for, and queues the build again.
    public func approve(_ id: BuildID, sha: String, by approver: String, at now: Date) async throws -> ApprovalResult {
        let result = try await change(id, reading: nil, at: now) { snapshot, _ in
            var machine = BuildStateMachine(snapshot.build)
            let (result, actions) = machine.approve(snapshot.build, sha: sha, by: approver)
            return (actions, result)
        }
        return result?.decision ?? .notFound
    }
}

extension BuildControl {
    /// A new build of the newest build of commit `sha`, as a re-run; nil when Kiln never built it.
    /// Idempotent on the delivery id like `accept`.
    public func rerun(
        sha: String, of build: BuildID? = nil, repository: RepositoryID, forge: String, deliveryID: String, failedOnly: Bool = false,
        at now: Date
    ) async throws -> (buildID: BuildID, isNew: Bool)? {
        try await rerun(
            sha: sha, of: build, repository: repository, forge: forge, deliveryID: deliveryID, failedOnly: failedOnly, at: now,
            summary: failedOnly ? BuildStateMachine.rerunFailedSummary : BuildStateMachine.rerunSummary)
    }
}

/// A row a lifecycle step needs is gone.
public enum BuildStoreError: Error, CustomStringConvertible, Equatable {
    /// Nothing has this id.
    case missing(String)

    /// What is missing.
    public var description: String {
        switch self {
        case .missing(let what): return "\(what) does not exist"
        }
    }
}
