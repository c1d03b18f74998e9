import Foundation
import GRDB
import KilnCore
import KilnPipeline

extension SQLiteStore {
    /// Carries out a build's state machine's actions in the open transaction `db`.
    func apply(_ actions: [BuildStateMachine.Action], to build: BuildRecord, at now: Date, _ db: Database) throws {
        let time = now.timeIntervalSince1970
        for action in actions {
            switch action {
            case .persist(let state, let summary, let diagnostics):
                switch state {
                case .planning:
                    try db.execute(
                        sql: "UPDATE builds SET state = ?, summary = ?, planning_since = ? WHERE id = ?",
                        arguments: [state.rawValue, summary, time, build.id])
                case .running:
                    try db.execute(
                        sql: "UPDATE builds SET state = ?, summary = ?, started_at = ? WHERE id = ?",
                        arguments: [state.rawValue, summary, time, build.id])
                case .queued, .awaitingApproval:
                    try db.execute(
                        sql: "UPDATE builds SET state = ?, summary = ? WHERE id = ?", arguments: [state.rawValue, summary, build.id])
                case .succeeded, .failed, .errored, .cancelled, .skipped:
                    try end(build, state, summary: summary, at: time, db, diagnostics: diagnostics)
                }
            case .queueJobs(let jobs):
                for queued in jobs {
                    let job = queued.job
                    try db.execute(
                        sql: """
                            INSERT INTO jobs (build_id, name, installables, target, system, needs, timeout_seconds,
                                              max_silent_seconds, allow_failure, cache_push, min_memory, state, summary,
                                              queued_at)
                            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'queued', ?, ?)
                            """,
                        arguments: [
                            build.id, job.name, Rows.json(job.installables), Rows.encode(job.target), job.system,
                            Rows.json(job.needs), job.timeout.components.seconds, job.maxSilent.components.seconds,
                            job.allowFailure, job.cachePush, job.minMemory, queued.summary, time,
                        ])
                }
            case .reuseJobs(let earlierID, let summaries):
                for (jobID, summary) in summaries.sorted(by: { $0.key < $1.key }) {
                    try db.execute(
                        sql: """
                            INSERT INTO jobs (build_id, name, installables, target, system, needs, timeout_seconds, max_silent_seconds,
                                              allow_failure, cache_push, min_memory, state, summary, exit_code, derivations, outputs,
                                              cpu_seconds, peak_memory_kb, cache_summary, attempt, queued_at, started_at, finished_at)
                            SELECT ?, name, installables, target, system, needs, timeout_seconds, max_silent_seconds,
                                   allow_failure, cache_push, min_memory, state, ?, exit_code, derivations, outputs,
                                   cpu_seconds, peak_memory_kb, cache_summary, 0, ?, NULL, ?
                            FROM jobs WHERE id = ?
                            """,
                        arguments: [build.id, summary, time, time, jobID])
                }
                try db.execute(
                    sql: "UPDATE builds SET reused_from = ?, started_at = ? WHERE id = ?", arguments: [earlierID, time, build.id])
            case .enqueue(let statuses):
                try enqueue(statuses, for: build, at: now, db)
            case .cancelJobs(let jobs, let summary):
                for job in jobs {
                    try db.execute(
                        sql: "UPDATE jobs SET state = 'cancelled', summary = ?, finished_at = ? WHERE id = ?",
                        arguments: [summary, time, job])
                }
            case .stopJobs(_, let summary):
                // The owner stops them; should Kiln die first, recovery ends them with this summary.
                try db.execute(sql: "UPDATE builds SET cancel_reason = ? WHERE id = ?", arguments: [summary, build.id])
            }
        }
    }
}
