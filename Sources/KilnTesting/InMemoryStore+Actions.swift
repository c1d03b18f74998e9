import Foundation
import KilnCore
import KilnPipeline

extension InMemoryStore {
    /// Carries out a state machine's actions on `build`, as `SQLStore` does in a transaction.
    static func apply(_ actions: [BuildStateMachine.Action], to build: BuildRecord, at now: Date, lease: Lease, _ state: inout State) {
        let id = build.id
        for action in actions {
            switch action {
            case .persist(let next, let summary, let diagnostics):
                state.builds[id]?.state = next
                state.builds[id]?.summary = summary
                switch next {
                case .planning:
                    state.planningSince[id] = now
                    state.builds[id]?.owner = lease.owner
                    state.builds[id]?.leaseUntil = now.addingTimeInterval(lease.duration)
                case .running: state.builds[id]?.startedAt = now
                case .queued, .awaitingApproval: break
                case .succeeded, .failed, .errored, .cancelled, .skipped:
                    state.builds[id]?.diagnostics = diagnostics
                    state.builds[id]?.finishedAt = now
                }
            case .queueJobs(let queued):
                for entry in queued {
                    let job = entry.job
                    let jobID = state.newID()
                    state.jobs[jobID] = JobRecord(
                        id: jobID, buildID: id, name: job.name, target: job.target, system: job.system, needs: job.needs,
                        timeout: job.timeout, maxSilent: job.maxSilent, allowFailure: job.allowFailure, cachePush: job.cachePush,
                        minMemory: job.minMemory, state: .queued, summary: entry.summary, queuedAt: now)
                    state.jobs[jobID]?.image = job.image
                    state.jobs[jobID]?.constraints = job.constraints
                    state.jobs[jobID]?.tags = job.tags
                }
            case .reuseJobs(let earlier, let summaries):
                copyJobs(summaries, into: id, at: now, &state)
                state.reusedFrom[id] = earlier
                state.builds[id]?.startedAt = now
            case .keepJobs(_, let summaries):
                copyJobs(summaries, into: id, at: now, &state)
            case .enqueue(let statuses):
                guard let current = state.builds[id] else { continue }
                for status in statuses {
                    for index in state.outbox.indices where state.outbox[index].delivery == .pending {
                        let entry = state.outbox[index]
                        if entry.forge == current.forge && entry.commit.repository == current.repository
                            && entry.commit.sha == current.sha && entry.status.context == status.context
                        {
                            state.outbox[index].delivery = .superseded
                        }
                    }
                    state.outbox.append(
                        OutboxEntry(
                            id: state.newID(), buildID: id, forge: current.forge,
                            commit: CommitRef(repository: current.repository, sha: current.sha, branch: current.statusBranch),
                            status: status, delivery: .pending, attempts: 0, nextAttemptAt: now, lastError: nil, createdAt: now))
                }
            case .cancelJobs(let jobs, let summary):
                for job in jobs { end(job, .cancelled, summary, at: now, &state) }
            case .stopJobs(_, let summary):
                state.builds[id]?.cancelReason = summary
            case .summarize(let summary):
                state.builds[id]?.summary = summary
            case .resolve(let resolution):
                state.builds[id]?.sha = resolution.sha
                state.builds[id]?.builtSHA = resolution.builtSHA
                state.builds[id]?.trusted = resolution.trusted
                state.treeKeys[id] = resolution.treeKey
                state.builds[id]?.treeKey = resolution.treeKey
                if let title = resolution.title { state.builds[id]?.title = title }
            case .recordApproval(let number, let sha, _):
                state.approvals.insert("\(build.repositoryID)\n\(number)\n\(sha)")
            case .startJob(let job, let summary):
                state.jobs[job]?.state = .running
                state.jobs[job]?.summary = summary
                state.jobs[job]?.attempt += 1
                state.jobs[job]?.startedAt = now
                state.jobs[job]?.owner = lease.owner
                state.jobs[job]?.leaseUntil = now.addingTimeInterval(lease.duration)
            case .endJob(let job, let next, let summary, let report):
                end(job, next, summary, at: now, &state)
                guard let report else { continue }
                state.jobs[job]?.exitCode = report.exitCode
                state.jobs[job]?.derivations = report.derivations
                state.jobs[job]?.outputs = report.outputs
                state.jobs[job]?.cpuSeconds = report.cpuSeconds
                state.jobs[job]?.peakMemoryKilobytes = report.peakMemoryKilobytes
                state.jobs[job]?.cacheSummary = report.cache?.summary
                state.jobs[job]?.built = report.built
                state.jobs[job]?.waitedFor = report.waitedFor
                state.jobs[job]?.machines = report.machines
                state.jobs[job]?.imagePush = report.image
                state.jobs[job]?.substituted = report.substituted
                state.jobs[job]?.cachePushedBytes = report.cachePushedBytes
                state.jobs[job]?.peakStorageKilobytes = report.peakStorageKilobytes
            case .requeueJobs(let jobs, let summary):
                for job in jobs {
                    state.jobs[job]?.state = .queued
                    state.jobs[job]?.summary = summary
                    state.jobs[job]?.queuedAt = now
                }
            case .recordDerivations(let found):
                for (job, derivations) in found { state.jobs[job]?.derivations = derivations }
            case .restartClocks(let jobs):
                for job in jobs { state.jobs[job]?.startedAt = now }
            }
        }
    }

    /// Copies jobs of another build into build `id`, with their results and these summaries.
    private static func copyJobs(_ summaries: [JobID: String], into id: BuildID, at now: Date, _ state: inout State) {
        for (jobID, summary) in summaries.sorted(by: { $0.key < $1.key }) {
            guard var copy = state.jobs[jobID] else { continue }
            copy.id = state.newID()
            copy.buildID = id
            copy.summary = summary
            copy.attempt = 0
            copy.queuedAt = now
            copy.startedAt = nil
            copy.finishedAt = now
            state.jobs[copy.id] = copy
        }
    }

    private static func end(_ job: JobID, _ next: JobState, _ summary: String, at now: Date, _ state: inout State) {
        state.jobs[job]?.state = next
        state.jobs[job]?.summary = summary
        state.jobs[job]?.finishedAt = now
    }
}
