import Foundation
import GRDB
import KilnCore
import KilnPipeline

extension SQLStore {
    /// Carries out a build's state machine's actions in the open transaction `db`.
    func apply(_ actions: [BuildStateMachine.Action], to build: BuildRecord, at now: Date, _ db: any SQLConnection) throws {
        // Builds, jobs and statuses changed: other instances have work (or news) to look at.
        if !actions.isEmpty { db.announceWork() }
        var build = build
        let time = now.timeIntervalSince1970
        for action in actions {
            switch action {
            case .persist(let state, let summary, let diagnostics):
                switch state {
                case .planning:
                    try db.execute(
                        "UPDATE builds SET state = ?, summary = ?, planning_since = ?, owner = ?, lease_until = ? WHERE id = ?",
                        [state.rawValue, summary, time, lease.owner, time + lease.duration, build.id])
                case .running:
                    try db.execute("UPDATE builds SET state = ?, summary = ?, started_at = ? WHERE id = ?",
                        [state.rawValue, summary, time, build.id])
                case .queued, .awaitingApproval:
                    try db.execute("UPDATE builds SET state = ?, summary = ? WHERE id = ?", [state.rawValue, summary, build.id])
                case .succeeded, .failed, .errored, .cancelled, .skipped:
                    try end(build, state, summary: summary, at: time, db, diagnostics: diagnostics)
                }
            case .queueJobs(let jobs):
                for queued in jobs {
                    let job = queued.job
                    try db.execute("""
                            INSERT INTO jobs (build_id, name, installables, target, system, needs, timeout_seconds,
                                              max_silent_seconds, allow_failure, cache_push, min_memory, image, constraints, tags,
                                              state, summary, queued_at)
                            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                            """,
                        [
                            build.id, job.name, Rows.json(job.installables), Rows.encode(job.target), job.system,
                            Rows.json(job.needs), job.timeout.components.seconds, job.maxSilent.components.seconds,
                            job.allowFailure, job.cachePush, job.minMemory, job.image.map(Rows.encode),
                            job.constraints.isEmpty ? nil : Rows.encode(job.constraints), job.tags.isEmpty ? nil : Rows.encode(job.tags),
                            JobState.queued.rawValue, queued.summary, time,
                        ])
                }
            case .reuseJobs(let earlierID, let summaries):
                try copyJobs(summaries, into: build, at: time, db)
                try db.execute("UPDATE builds SET reused_from = ?, started_at = ? WHERE id = ?", [earlierID, time, build.id])
            case .keepJobs(_, let summaries):
                try copyJobs(summaries, into: build, at: time, db)
            case .enqueue(let statuses):
                try enqueue(statuses, for: build, at: now, db)
            case .cancelJobs(let jobs, let summary):
                for job in jobs {
                    try db.execute("UPDATE jobs SET state = ?, summary = ?, finished_at = ? WHERE id = ?",
                        [JobState.cancelled.rawValue, summary, time, job])
                }
            case .stopJobs(_, let summary):
                // The owner stops them; should Kiln die first, recovery ends them with this summary.
                try db.execute("UPDATE builds SET cancel_reason = ? WHERE id = ?", [summary, build.id])
            case .summarize(let summary):
                try db.execute("UPDATE builds SET summary = ? WHERE id = ?", [summary, build.id])
            case .resolve(let resolution):
                try db.execute("UPDATE builds SET sha = ?, built_sha = ?, trusted = ?, tree_key = ?, title = COALESCE(?, title) WHERE id = ?",
                    [
                        resolution.sha, resolution.builtSHA, resolution.trusted, resolution.treeKey, resolution.title, build.id,
                    ])
                // Statuses enqueued after this report on the resolved commit.
                build.sha = resolution.sha
                build.builtSHA = resolution.builtSHA
                build.trusted = resolution.trusted
            case .recordApproval(let number, let sha, let approver):
                try db.execute("""
                        INSERT INTO approvals (repository_id, pr_number, sha, approved_by, approved_at) VALUES (?, ?, ?, ?, ?)
                        ON CONFLICT (repository_id, pr_number, sha) DO NOTHING
                        """,
                    [build.repositoryID, number, sha, approver, time])
            case .startJob(let job, let summary):
                try db.execute(
                    "UPDATE jobs SET state = ?, summary = ?, attempt = attempt + 1, started_at = ?, owner = ?, lease_until = ? WHERE id = ?",
                    [JobState.running.rawValue, summary, time, lease.owner, time + lease.duration, job])
            case .endJob(let job, let state, let summary, nil):
                try db.execute("UPDATE jobs SET state = ?, summary = ?, finished_at = ? WHERE id = ?",
                    [state.rawValue, summary, time, job])
            case .endJob(let job, let state, let summary, let report?):
                try db.execute("""
                        UPDATE jobs SET state = ?, summary = ?, exit_code = ?, derivations = ?, outputs = ?, cpu_seconds = ?,
                                        peak_memory_kb = ?, cache_summary = ?, built = ?, waited_for = ?, image_push = ?,
                                        substituted = ?, cache_pushed_bytes = ?, peak_storage_kb = ?, machines = ?, finished_at = ?
                        WHERE id = ?
                        """,
                    [
                        state.rawValue, summary, report.exitCode, Rows.json(report.derivations), Rows.encode(report.outputs),
                        report.cpuSeconds, report.peakMemoryKilobytes, report.cache?.summary, Rows.json(report.built),
                        Rows.json(report.waitedFor), report.image.map(Rows.encode), report.substituted, report.cachePushedBytes,
                        report.peakStorageKilobytes, Rows.json(report.machines), time, job,
                    ])
            case .requeueJobs(let jobs, let summary):
                for job in jobs {
                    try db.execute("UPDATE jobs SET state = ?, summary = ?, queued_at = ? WHERE id = ?",
                        [JobState.queued.rawValue, summary, time, job])
                }
            case .recordDerivations(let found):
                for (job, derivations) in found.sorted(by: { $0.key < $1.key }) {
                    try db.execute("UPDATE jobs SET derivations = ? WHERE id = ?", [Rows.json(derivations), job])
                }
            case .restartClocks(let jobs):
                for job in jobs {
                    try db.execute("UPDATE jobs SET started_at = ? WHERE id = ?", [time, job])
                }
            }
        }
    }

    /// Copies jobs of another build into `build`, with their results and these summaries.
    private func copyJobs(_ summaries: [JobID: String], into build: BuildRecord, at time: Double, _ db: any SQLConnection) throws {
        for (jobID, summary) in summaries.sorted(by: { $0.key < $1.key }) {
            try db.execute("""
                    INSERT INTO jobs (build_id, name, installables, target, system, needs, timeout_seconds, max_silent_seconds,
                                      allow_failure, cache_push, min_memory, image, image_push, constraints, tags, peak_storage_kb,
                                      state, summary, exit_code,
                                      derivations, outputs, cpu_seconds, peak_memory_kb, cache_summary, built, waited_for, machines,
                                      substituted, cache_pushed_bytes, attempt, queued_at, started_at, finished_at)
                    SELECT ?, name, installables, target, system, needs, timeout_seconds, max_silent_seconds,
                           allow_failure, cache_push, min_memory, image, image_push, constraints, tags, peak_storage_kb,
                           state, ?, exit_code,
                           derivations, outputs, cpu_seconds, peak_memory_kb, cache_summary, built, waited_for, machines,
                           substituted, cache_pushed_bytes, 0, ?, NULL, ?
                    FROM jobs WHERE id = ?
                    """,
                [build.id, summary, time, time, jobID])
        }
    }
}
