import Foundation
import GRDB
import KilnCore
import KilnPipeline

/// `BuildStore` on a SQLite file (WAL mode), through GRDB.
///
/// Each method is one transaction. Decisions about what a change implies (which jobs
/// are skipped, when a build ends, which statuses to post) are `KilnCore`'s pure
/// functions; this type reads the rows they need and writes what they return.
public struct SQLiteStore: KilnStore {
    let database: any DatabaseWriter
    private let intake: GroupCommit

    /// Opens (creating if needed) and migrates the database at `path`.
    public init(path: String) throws {
        do {
            let pool = try DatabasePool(path: path, configuration: Self.configuration)
            // A 202 survives power loss: every commit reaches the disk before it returns. (GRDB
            // sets the writer to NORMAL when it turns WAL on, which may lose the last commits.)
            try pool.writeWithoutTransaction { db in try db.execute(sql: "PRAGMA synchronous = FULL") }
            try self.init(pool)
        } catch {
            throw StoreError.unavailable(path: path, reason: "\(error)")
        }
    }

    /// A store over `database` (migrated here): a file's pool, or an in-memory queue for tests.
    public init(_ database: any DatabaseWriter) throws {
        try Schema.migrator.migrate(database)
        self.database = database
        intake = GroupCommit(database: database)
    }

    /// A store in memory, gone with the process (tests).
    public static func inMemory() throws -> SQLiteStore {
        try SQLiteStore(DatabaseQueue(configuration: configuration))
    }

    static var configuration: Configuration {
        var configuration = Configuration()
        configuration.foreignKeysEnabled = true
        configuration.busyMode = .timeout(10)
        return configuration
    }

    /// The `synchronous` setting of the writing connection (2 is FULL).
    func synchronousSetting() async throws -> Int {
        try await database.write { db in try Int.fetchOne(db, sql: "PRAGMA synchronous") ?? -1 }
    }

    /// Whether the database accepts writes; for `/health`.
    public func isWritable() async -> Bool {
        do {
            try await database.write { db in try db.execute(sql: "CREATE TEMP TABLE IF NOT EXISTS health (x)") }
            return true
        } catch {
            return false
        }
    }

    /// Records the configured repositories and returns their ids. Ids are stable across
    /// restarts (they name the mirror directories); repositories removed from the
    /// configuration keep their rows so old builds still show.
    public func syncRepositories(_ repositories: [(forge: String, name: String)]) async throws -> [RepositoryID] {
        try await database.write { db in
            try repositories.map { repository in
                try db.execute(
                    sql: "INSERT INTO repositories (forge, name) VALUES (?, ?) ON CONFLICT (forge, name) DO NOTHING",
                    arguments: [repository.forge, repository.name])
                return try RepositoryID.fetchOne(
                    db, sql: "SELECT id FROM repositories WHERE forge = ? AND name = ?",
                    arguments: [repository.forge, repository.name])!
            }
        }
    }

    public func accept(_ delivery: NewDelivery, at now: Date) async throws -> (buildID: BuildID, isNew: Bool) {
        try await intake.accept(delivery, at: now)
    }

    /// Records one delivery and its queued build in the open transaction `db`; idempotent on the delivery id.
    /// Its statements are prepared once per connection (intake runs them for every delivery).
    static func insert(_ delivery: NewDelivery, at now: Date, _ db: Database) throws -> (buildID: BuildID, isNew: Bool) {
        if let existing = try BuildID.fetchOne(
            db.cachedStatement(sql: "SELECT build_id FROM deliveries WHERE forge = ? AND delivery_id = ?"),
            arguments: [delivery.forge, delivery.deliveryID])
        {
            return (existing, false)
        }
        try db.cachedStatement(
            sql: """
                INSERT INTO builds (repository_id, forge, repository, sha, ref, before_sha, state, summary, created_at,
                                    pr_number, pr_head_branch, pr_base_branch, pr_is_fork, pr_head_repository)
                VALUES (?, ?, ?, ?, ?, ?, 'queued', 'queued: fetching and reading the pipeline file', ?, ?, ?, ?, ?, ?)
                """
        ).execute(
            arguments: [
                delivery.repositoryID, delivery.forge, delivery.repository, delivery.sha, delivery.ref.fullName,
                delivery.before, now.timeIntervalSince1970, delivery.pullRequest?.number,
                delivery.pullRequest?.headBranch, delivery.pullRequest?.baseBranch, delivery.pullRequest?.isFork ?? false,
                delivery.pullRequest?.headRepository,
            ])
        let buildID = db.lastInsertedRowID
        try db.cachedStatement(sql: "INSERT INTO deliveries (forge, delivery_id, build_id, received_at) VALUES (?, ?, ?, ?)")
            .execute(arguments: [delivery.forge, delivery.deliveryID, buildID, now.timeIntervalSince1970])
        // Its event in the same transaction: the build and its announcement are one commit.
        let event = BuildEvents.queued(buildID, delivery)
        try db.cachedStatement(
            sql: "INSERT INTO events (type, build_id, job_id, repository, data, created_at) VALUES (?, ?, NULL, ?, ?, ?)"
        ).execute(arguments: [event.type, buildID, event.repository, event.data, now.timeIntervalSince1970])
        return (buildID, true)
    }

    public func claimBuildToPlan(excluding busy: Set<RepositoryID>) async throws -> BuildRecord? {
        try await database.write { db in
            let others = busy.isEmpty ? "" : " AND repository_id NOT IN (\(busy.sorted().map(String.init).joined(separator: ",")))"
            guard let row = try Row.fetchOne(db, sql: "SELECT * FROM builds WHERE state = 'queued'\(others) ORDER BY id LIMIT 1")
            else { return nil }
            var build = try Rows.build(row)
            var machine = BuildStateMachine(state: build.state, summary: build.summary)
            try apply(machine.claim(), to: build, at: Date(), db)
            build.state = machine.state
            build.summary = machine.summary
            return build
        }
    }

    public func finishPlanning(_ buildID: BuildID, _ result: PlanningResult, resolution: BuildResolution?, at now: Date)
        async throws
    {
        try await database.write { db in
            guard let row = try Row.fetchOne(db, sql: "SELECT * FROM builds WHERE id = ?", arguments: [buildID]) else {
                return
            }
            var build = try Rows.build(row)
            guard build.state == .planning else { return }
            if let resolution {
                try db.execute(
                    sql: "UPDATE builds SET sha = ?, built_sha = ?, trusted = ?, tree_key = ? WHERE id = ?",
                    arguments: [resolution.sha, resolution.builtSHA, resolution.trusted, resolution.treeKey, buildID])
                build.sha = resolution.sha
                build.builtSHA = resolution.builtSHA
                build.trusted = resolution.trusted
            }
            var earlier: (build: BuildRecord, jobs: [JobRecord])?
            if case .reused(let earlierID) = result,
                let row = try Row.fetchOne(db, sql: "SELECT * FROM builds WHERE id = ?", arguments: [earlierID])
            {
                let jobs = try Row.fetchAll(db, sql: "SELECT * FROM jobs WHERE build_id = ? ORDER BY id", arguments: [earlierID])
                    .map(Rows.job)
                earlier = (try Rows.build(row), jobs)
            }
            var machine = BuildStateMachine(state: build.state, summary: build.summary)
            try apply(machine.finishPlanning(result, earlier: earlier), to: build, at: now, db)
        }
    }

    public func claimRunnableJob(at now: Date, freeMemory: Int) async throws -> ClaimedJob? {
        try await database.write { db in
            let buildRows = try Row.fetchAll(
                db,
                sql: """
                    SELECT * FROM builds WHERE state = 'running'
                      AND id IN (SELECT build_id FROM jobs WHERE state = 'queued') ORDER BY id
                    """)
            for buildRow in buildRows {
                let build = try Rows.build(buildRow)
                let jobs = try Row.fetchAll(db, sql: "SELECT * FROM jobs WHERE build_id = ? ORDER BY id", arguments: [build.id])
                    .map(Rows.job)
                guard var job = BuildProgress.runnable(jobs).first(where: { ($0.minMemory ?? 0) <= freeMemory }) else {
                    continue
                }
                var machine = JobStateMachine(state: job.state, summary: job.summary)
                guard machine.apply(.start) == .run else { continue }
                job.state = machine.state
                job.summary = machine.summary
                job.attempt += 1
                job.startedAt = now
                try db.execute(
                    sql: "UPDATE jobs SET state = ?, summary = ?, attempt = ?, started_at = ? WHERE id = ?",
                    arguments: [job.state.rawValue, job.summary, job.attempt, now.timeIntervalSince1970, job.id])
                let statuses = BuildProgress.startedStatuses(job, of: jobs)
                if let phase = statuses.first(where: { $0.context == StatusUpdate.buildContext }) {
                    try db.execute(sql: "UPDATE builds SET summary = ? WHERE id = ?", arguments: [phase.description, build.id])
                }
                try enqueue(statuses, for: build, at: now, db)
                return ClaimedJob(job: job, build: build)
            }
            return nil
        }
    }

    public func finishJob(_ jobID: JobID, _ report: JobReport, details: String?, at now: Date) async throws -> BuildRecord {
        try await database.write { db in
            guard let jobRow = try Row.fetchOne(db, sql: "SELECT * FROM jobs WHERE id = ?", arguments: [jobID]) else {
                throw StoreError.corrupt("job \(jobID) does not exist")
            }
            let job = try Rows.job(jobRow)
            let build = try Rows.build(
                try Row.fetchOne(db, sql: "SELECT * FROM builds WHERE id = ?", arguments: [job.buildID])!)
            var machine = JobStateMachine(state: job.state, summary: job.summary, allowFailure: job.allowFailure)
            guard case .report(let status, let description) = machine.apply(.finish(report)) else { return build }
            try db.execute(
                sql: """
                    UPDATE jobs SET state = ?, summary = ?, exit_code = ?, derivations = ?, outputs = ?, cpu_seconds = ?,
                                    peak_memory_kb = ?, cache_summary = ?, built = ?, waited_for = ?, finished_at = ?
                    WHERE id = ?
                    """,
                arguments: [
                    machine.state.rawValue, description, report.exitCode, Rows.json(report.derivations),
                    Rows.encode(report.outputs), report.cpuSeconds, report.peakMemoryKilobytes, report.cache?.summary,
                    Rows.json(report.built), Rows.json(report.waitedFor), now.timeIntervalSince1970, jobID,
                ])
            try enqueue(
                [StatusUpdate(context: job.context, state: status, description: description, details: details)],
                for: build, at: now, db)
            return try apply(progressAfterJobEnded: build, at: now, db)
        }
    }

    /// Skips what can no longer run and concludes the build if every job has ended.
    private func apply(progressAfterJobEnded build: BuildRecord, at now: Date, _ db: Database) throws -> BuildRecord {
        let jobs = try Row.fetchAll(db, sql: "SELECT * FROM jobs WHERE build_id = ? ORDER BY id", arguments: [build.id])
            .map(Rows.job)
        let update = BuildProgress.afterJobEnded(build, jobs: jobs, now: now)
        let time = now.timeIntervalSince1970
        for change in update.jobChanges {
            try db.execute(
                sql: "UPDATE jobs SET state = ?, summary = ?, finished_at = ? WHERE id = ?",
                arguments: [change.state.rawValue, change.summary, time, change.jobID])
        }
        try enqueue(update.statuses, for: build, at: now, db)
        guard let change = update.build else { return build }
        try end(build, change.state, summary: change.summary, at: time, db)
        var ended = build
        ended.state = change.state
        ended.summary = change.summary
        ended.finishedAt = now
        return ended
    }

    public func recoverInterrupted(at now: Date) async throws -> (builds: Int, jobs: Int) {
        try await database.write { db in
            try db.execute(sql: "UPDATE builds SET state = 'queued' WHERE state = 'planning'")
            let builds = db.changesCount
            // Jobs of a build cancelled while they ran end cancelled; they never run again.
            for row in try Row.fetchAll(db, sql: "SELECT * FROM builds WHERE cancel_reason IS NOT NULL AND state = 'running'") {
                let build = try Rows.build(row)
                let reason: String = row["cancel_reason"]
                let stopped = try Row.fetchAll(
                    db, sql: "SELECT * FROM jobs WHERE build_id = ? AND state = 'running' ORDER BY id", arguments: [build.id]
                ).map(Rows.job)
                try db.execute(
                    sql: "UPDATE jobs SET state = 'cancelled', summary = ?, finished_at = ? WHERE build_id = ? AND state = 'running'",
                    arguments: [reason, now.timeIntervalSince1970, build.id])
                try enqueue(
                    stopped.map { StatusUpdate(context: $0.context, state: .cancelled, description: reason) }, for: build, at: now, db)
                _ = try apply(progressAfterJobEnded: build, at: now, db)
            }
            var machine = JobStateMachine(state: .running)
            _ = machine.apply(.requeue)
            try db.execute(
                sql: "UPDATE jobs SET state = ?, summary = ? WHERE state = 'running'",
                arguments: [machine.state.rawValue, machine.summary])
            return (builds, db.changesCount)
        }
    }

    public func overdue(at now: Date, jobGrace: TimeInterval, planningLimit: TimeInterval) async throws
        -> (jobs: [JobID], builds: [BuildID])
    {
        try await database.read { db in
            let time = now.timeIntervalSince1970
            let jobs = try JobID.fetchAll(
                db, sql: "SELECT id FROM jobs WHERE state = 'running' AND started_at + timeout_seconds + ? < ? ORDER BY id",
                arguments: [jobGrace, time])
            let builds = try BuildID.fetchAll(
                db, sql: "SELECT id FROM builds WHERE state = 'planning' AND planning_since + ? < ? ORDER BY id",
                arguments: [planningLimit, time])
            return (jobs, builds)
        }
    }

    public func buildDetails(_ id: BuildID) async throws -> BuildDetails? {
        try await database.read { db in
            guard let row = try Row.fetchOne(db, sql: "SELECT * FROM builds WHERE id = ?", arguments: [id]) else {
                return nil
            }
            let jobs = try Row.fetchAll(db, sql: "SELECT * FROM jobs WHERE build_id = ? ORDER BY id", arguments: [id])
                .map(Rows.job)
            let statuses = try Row.fetchAll(
                db, sql: "SELECT * FROM status_outbox WHERE build_id = ? ORDER BY id", arguments: [id]
            ).map(Rows.outbox)
            return BuildDetails(build: try Rows.build(row), jobs: jobs, statuses: statuses)
        }
    }

    public func job(_ id: JobID) async throws -> JobRecord? {
        try await database.read { db in
            try Row.fetchOne(db, sql: "SELECT * FROM jobs WHERE id = ?", arguments: [id]).map(Rows.job)
        }
    }

    public func recentBuilds(limit: Int) async throws -> [BuildRecord] {
        try await database.read { db in
            try Row.fetchAll(db, sql: "SELECT * FROM builds ORDER BY id DESC LIMIT ?", arguments: [limit]).map(Rows.build)
        }
    }

    public func removeBuilds(endedBefore date: Date) async throws -> (builds: Int, jobs: [JobID]) {
        try await database.write { db in
            let cutoff = date.timeIntervalSince1970
            let old = "SELECT id FROM builds WHERE finished_at IS NOT NULL AND finished_at < ?"
            let jobs = try JobID.fetchAll(db, sql: "SELECT id FROM jobs WHERE build_id IN (\(old))", arguments: [cutoff])
            for table in ["status_outbox", "jobs", "deliveries"] {
                try db.execute(sql: "DELETE FROM \(table) WHERE build_id IN (\(old))", arguments: [cutoff])
            }
            // A kept build may have reused or re-run an old one: it keeps its own copies of the
            // jobs, and only loses the link (which would otherwise fail the whole clean-up).
            for column in ["reused_from", "rerun_of"] {
                try db.execute(sql: "UPDATE builds SET \(column) = NULL WHERE \(column) IN (\(old))", arguments: [cutoff])
            }
            try db.execute(sql: "DELETE FROM builds WHERE id IN (\(old))", arguments: [cutoff])
            return (db.changesCount, jobs)
        }
    }

    // MARK: Control

    public func noteBuildPhase(_ buildID: BuildID, _ summary: String, derivations: [String: [String]], at now: Date)
        async throws
    {
        try await database.write { db in
            guard let row = try Row.fetchOne(db, sql: "SELECT * FROM builds WHERE id = ?", arguments: [buildID]) else { return }
            let build = try Rows.build(row)
            guard build.state == .running else { return }
            for (name, found) in derivations.sorted(by: { $0.key < $1.key }) {
                try db.execute(
                    sql: "UPDATE jobs SET derivations = ? WHERE build_id = ? AND name = ? AND state IN ('queued', 'running')",
                    arguments: [Rows.json(found), buildID, name])
            }
            if !derivations.isEmpty {
                // The evaluation is over: the jobs waiting for it start building now, and their
                // timeouts count from here.
                try db.execute(
                    sql: "UPDATE jobs SET started_at = ? WHERE build_id = ? AND state = 'running'",
                    arguments: [now.timeIntervalSince1970, buildID])
            }
            guard build.summary != summary else { return }
            try db.execute(sql: "UPDATE builds SET summary = ? WHERE id = ?", arguments: [summary, buildID])
            try enqueue([StatusUpdate(context: StatusUpdate.buildContext, state: .running, description: summary)], for: build, at: now, db)
        }
    }

    public func recordedDerivations(sameTreeAs buildID: BuildID) async throws
        -> (build: BuildID, derivations: [String: [String]])?
    {
        try await database.read { db in
            guard
                let earlier = try BuildID.fetchOne(
                    db,
                    sql: """
                        SELECT earlier.id FROM builds AS this JOIN builds AS earlier
                          ON earlier.repository_id = this.repository_id AND earlier.tree_key = this.tree_key AND earlier.id <> this.id
                        WHERE this.id = ? AND EXISTS (
                          SELECT 1 FROM jobs WHERE build_id = earlier.id AND derivations IS NOT NULL AND derivations <> '[]')
                        ORDER BY earlier.id DESC LIMIT 1
                        """,
                    arguments: [buildID])
            else { return nil }
            var derivations: [String: [String]] = [:]
            for job in try Row.fetchAll(db, sql: "SELECT * FROM jobs WHERE build_id = ?", arguments: [earlier]).map(Rows.job)
            where !job.derivations.isEmpty {
                derivations[job.name] = job.derivations
            }
            return (earlier, derivations)
        }
    }

    // MARK: Helpers inside a transaction

    func end(
        _ build: BuildRecord, _ state: BuildState, summary: String, at time: Double, _ db: Database,
        diagnostics: [String] = []
    ) throws {
        try db.execute(
            sql: "UPDATE builds SET state = ?, summary = ?, diagnostics = ?, finished_at = ? WHERE id = ?",
            arguments: [state.rawValue, summary, Rows.json(diagnostics), time, build.id])
    }
}
