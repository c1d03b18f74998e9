import Foundation
import GRDB
import KilnCore
import KilnPipeline
import Logging

/// `BuildStore` on a SQLite file (WAL mode, through GRDB), or on a PostgreSQL database
/// (through PostgresNIO): the same statements on either, through `SQLDatabase`.
///
/// Each method is one transaction. Decisions about what a change implies (which jobs
/// are skipped, when a build ends, which statuses to post) are `KilnCore`'s pure
/// functions; this type reads the rows they need and writes what they return.
public struct SQLStore: KilnStore {
    /// Every transaction of the store goes through this.
    let database: any SQLDatabase
    private let intake: GroupCommit
    /// This instance's claims.
    public let lease: Lease

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
        self.init(database: GRDBDatabase(writer: database))
    }

    private init(database: any SQLDatabase, lease: Lease = Lease()) {
        self.database = database
        self.lease = lease
        intake = GroupCommit(database: database)
    }

    /// Connects to the PostgreSQL database at `location` (at most `connections` connections)
    /// and migrates it.
    /// - Throws: `StoreError.unavailable` naming the server and what it said.
    public static func postgres(_ location: PostgresLocation, connections: Int = 4, lease: Lease = Lease(), logger: Logger)
        async throws -> SQLStore
    {
        let database = PostgresDatabase(location, maxConnections: connections, logger: logger)
        do {
            try await database.migrate(PostgresSchema.migrations)
        } catch {
            await database.close()
            throw StoreError.unavailable(path: location.display, reason: "\(error)")
        }
        return SQLStore(database: database, lease: lease)
    }

    public func renewLeases(at now: Date) async throws -> [JobID: String?] {
        try await database.write { [lease] db in
            let until = now.timeIntervalSince1970 + lease.duration
            try db.execute(
                "UPDATE builds SET lease_until = ? WHERE owner = ? AND state = \(BuildState.planning.sql)", [until, lease.owner])
            try db.execute("UPDATE jobs SET lease_until = ? WHERE owner = ? AND state = \(JobState.running.sql)", [until, lease.owner])
            var held: [JobID: String?] = [:]
            for row in try db.rows(
                """
                SELECT j.id AS id, b.cancel_reason AS reason FROM jobs j JOIN builds b ON b.id = j.build_id
                WHERE j.owner = ? AND j.state = \(JobState.running.sql)
                """, [lease.owner])
            {
                held[row["id"] as JobID] = row["reason"] as String?
            }
            return held
        }
    }

    /// The migrations a PostgreSQL database has and lacks, read without changing it (`kiln doctor`).
    public static func migrations(_ location: PostgresLocation, logger: Logger) async throws -> (applied: [String], missing: [String]) {
        let database = PostgresDatabase(location, maxConnections: 1, logger: logger)
        do {
            let applied = try await database.appliedMigrations()
            await database.close()
            return (applied, PostgresSchema.migrations.map(\.name).filter { !applied.contains($0) })
        } catch {
            await database.close()
            throw error
        }
    }

    /// Calls `wake` whenever another instance on a PostgreSQL database (or this one) changes
    /// builds, jobs, statuses or events, until the task is cancelled; returns at once on SQLite,
    /// which one instance alone uses.
    public func listenForWork(_ wake: @escaping @Sendable () -> Void) async {
        await (database as? PostgresDatabase)?.listen(wake)
    }

    /// Closes a PostgreSQL store's connections (nothing for SQLite, whose files close with the process).
    public func close() async {
        await (database as? PostgresDatabase)?.close()
    }

    /// The migrations a database file has and lacks, read without changing it (`kiln doctor`).
    public static func migrations(at path: String) throws -> (applied: [String], missing: [String]) {
        var configuration = Configuration()
        configuration.readonly = true
        let queue = try DatabaseQueue(path: path, configuration: configuration)
        let applied = try queue.read { db in try String.fetchAll(db, sql: "SELECT identifier FROM grdb_migrations") }
        return (applied, Schema.migrator.migrations.filter { !applied.contains($0) })
    }

    /// A store in memory, gone with the process (tests).
    public static func inMemory() throws -> SQLStore {
        try SQLStore(DatabaseQueue(configuration: configuration))
    }

    static var configuration: Configuration {
        var configuration = Configuration()
        configuration.foreignKeysEnabled = true
        configuration.busyMode = .timeout(10)
        configuration.prepareDatabase { db in
            // Statement journals and RETURNING's rows stay in memory: on disk, every intake
            // transaction created, wrote and unlinked a file in /var/tmp.
            try db.execute(sql: "PRAGMA temp_store = MEMORY")
        }
        return configuration
    }

    /// The `synchronous` setting of the writing connection (2 is FULL).
    func synchronousSetting() async throws -> Int {
        try await database.write { db in try db.value(Int.self, "PRAGMA synchronous") ?? -1 }
    }

    /// Whether the database accepts writes; for `/health`.
    public func isWritable() async -> Bool {
        do {
            try await database.write { db in try db.execute("CREATE TEMP TABLE IF NOT EXISTS health (x INTEGER)", []) }
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
                try db.execute("INSERT INTO repositories (forge, name) VALUES (?, ?) ON CONFLICT (forge, name) DO NOTHING",
                    [repository.forge, repository.name])
                return try db.value(RepositoryID.self, "SELECT id FROM repositories WHERE forge = ? AND name = ?",
                    [repository.forge, repository.name])!
            }
        }
    }

    public func accept(_ delivery: NewDelivery, at now: Date) async throws -> (buildID: BuildID, isNew: Bool) {
        try await intake.accept(delivery, at: now)
    }

    public func claimBuild(
        excluding busy: Set<RepositoryID>, at now: Date, _ decide: @Sendable (BuildRecord) -> [BuildStateMachine.Action]
    ) async throws -> BuildRecord? {
        try await database.write { db in
            let others = busy.isEmpty ? "" : " AND repository_id NOT IN (\(busy.sorted().map(String.init).joined(separator: ",")))"
            guard
                let row = try db.row("SELECT * FROM builds WHERE state = ?\(others) ORDER BY id LIMIT 1", [BuildState.queued.rawValue])
            else { return nil }
            let build = try Rows.build(row)
            try apply(decide(build), to: build, at: now, db)
            return try Self.snapshot(build.id, db)?.build
        }
    }

    public func claimJob(at now: Date, _ decide: @Sendable (BuildSnapshot) -> [BuildStateMachine.Action]) async throws
        -> ClaimedJob?
    {
        try await database.write { db in
            let candidates = try db.values(BuildID.self, "SELECT id FROM builds WHERE state = ? AND id IN (SELECT build_id FROM jobs WHERE state = ?) ORDER BY id",
                [BuildState.running.rawValue, JobState.queued.rawValue])
            for id in candidates {
                guard let snapshot = try Self.snapshot(id, db) else { continue }
                let actions = decide(snapshot)
                guard let started = BuildStateMachine.startedJob(actions) else { continue }
                try apply(actions, to: snapshot.build, at: now, db)
                guard let after = try Self.snapshot(id, db), let job = after.jobs.first(where: { $0.id == started }) else {
                    throw StoreError.corrupt("job \(started) vanished while it started")
                }
                return ClaimedJob(job: job, build: after.build)
            }
            return nil
        }
    }

    public func change<Decision: Sendable>(
        _ id: BuildID, reading earlier: BuildID?, at now: Date,
        _ decide: @Sendable (BuildSnapshot, BuildSnapshot?) -> (actions: [BuildStateMachine.Action], decision: Decision)
    ) async throws -> (build: BuildRecord, decision: Decision)? {
        try await database.write { db in
            guard let snapshot = try Self.snapshot(id, db) else { return nil }
            let (actions, decision) = decide(snapshot, try earlier.flatMap { try Self.snapshot($0, db) })
            guard !actions.isEmpty else { return (snapshot.build, decision) }
            try apply(actions, to: snapshot.build, at: now, db)
            guard let after = try Self.snapshot(id, db) else { throw StoreError.corrupt("build \(id) vanished while it changed") }
            return (after.build, decision)
        }
    }

    public func underWay() async throws -> [BuildID] {
        try await database.read { db in
            try db.values(BuildID.self, "SELECT id FROM builds WHERE state IN (?, ?) ORDER BY id",
                [BuildState.planning.rawValue, BuildState.running.rawValue])
        }
    }

    /// A build with its jobs, read in the open transaction `db`; nil when there is no such build.
    static func snapshot(_ id: BuildID, _ db: any SQLConnection) throws -> BuildSnapshot? {
        guard let row = try db.row("SELECT * FROM builds WHERE id = ?", [id]) else { return nil }
        let jobs = try db.rows("SELECT * FROM jobs WHERE build_id = ? ORDER BY id", [id]).map(Rows.job)
        return BuildSnapshot(build: try Rows.build(row), jobs: jobs)
    }

    public func overdue(at now: Date, jobGrace: TimeInterval, planningLimit: TimeInterval) async throws
        -> (jobs: [JobID], builds: [BuildID])
    {
        try await database.read { db in
            let time = now.timeIntervalSince1970
            let jobs = try db.values(JobID.self, "SELECT id FROM jobs WHERE state = \(JobState.running.sql) AND started_at + timeout_seconds + ? < ? ORDER BY id",
                [jobGrace, time])
            let builds = try db.values(BuildID.self, "SELECT id FROM builds WHERE state = \(BuildState.planning.sql) AND planning_since + ? < ? ORDER BY id",
                [planningLimit, time])
            return (jobs, builds)
        }
    }

    public func buildDetails(_ id: BuildID) async throws -> BuildDetails? {
        try await database.read { db in
            guard let row = try db.row("SELECT * FROM builds WHERE id = ?", [id]) else {
                return nil
            }
            let jobs = try db.rows("SELECT * FROM jobs WHERE build_id = ? ORDER BY id", [id])
                .map(Rows.job)
            let statuses = try db.rows("SELECT * FROM status_outbox WHERE build_id = ? ORDER BY id", [id]
            ).map(Rows.outbox)
            return BuildDetails(build: try Rows.build(row), jobs: jobs, statuses: statuses)
        }
    }

    public func job(_ id: JobID) async throws -> JobRecord? {
        try await database.read { db in
            try db.row("SELECT * FROM jobs WHERE id = ?", [id]).map(Rows.job)
        }
    }

    public func recentBuilds(limit: Int) async throws -> [BuildRecord] {
        try await database.read { db in
            try db.rows("SELECT * FROM builds ORDER BY id DESC LIMIT ?", [limit]).map(Rows.build)
        }
    }

    public func queueStats() async throws -> QueueStats {
        try await database.read { db in
            let builds = try db.row("SELECT COUNT(*) AS n, MIN(created_at) AS oldest FROM builds WHERE state = \(BuildState.queued.sql)")
            let jobs = try db.row("SELECT COUNT(*) AS n, MIN(queued_at) AS oldest FROM jobs WHERE state = \(JobState.queued.sql)")
            let running = try db.value(Int.self, "SELECT COUNT(*) FROM jobs WHERE state = \(JobState.running.sql)") ?? 0
            let pending = try db.value(Int.self, "SELECT COUNT(*) FROM status_outbox WHERE delivery = 'pending'") ?? 0
            return QueueStats(
                queuedBuilds: builds?["n"] ?? 0, oldestQueuedBuild: Rows.date(builds?["oldest"]), queuedJobs: jobs?["n"] ?? 0,
                oldestQueuedJob: Rows.date(jobs?["oldest"]), runningJobs: running, pendingStatuses: pending)
        }
    }

    public func buildStatistics(repository: String?, service: String?, since: Date) async throws -> BuildStatistics {
        var filter = "b.finished_at >= ?"
        var arguments: [(any SQLBindable)?] = [since.timeIntervalSince1970]
        if let repository {
            filter += " AND b.repository = ?"
            arguments.append(repository)
        }
        if let service {
            filter += " AND b.service = ?"
            arguments.append(service)
        }
        let sql = database.dialect
        let buildSQL = """
            SELECT b.state AS state, COUNT(*) AS n, AVG(b.finished_at - COALESCE(b.started_at, b.created_at)) AS seconds
            FROM builds b WHERE \(filter) GROUP BY b.state
            """
        // Jobs that ran (a reused build's copies did not).
        let jobSQL = """
            SELECT COUNT(*) AS jobs,
                   COALESCE(SUM(j.finished_at - j.started_at), 0) AS seconds,
                   COALESCE(SUM(CASE WHEN j.state = \(JobState.succeeded.sql) THEN \(sql.jsonLength("j.outputs")) ELSE 0 END), 0) AS outputs,
                   COALESCE(SUM(CASE WHEN j.state = \(JobState.succeeded.sql)
                       THEN \(sql.jsonSum("narSize", of: "j.outputs")) ELSE 0 END), 0) AS bytes,
                   COALESCE(SUM(\(sql.jsonLength("j.built"))), 0) AS built,
                   COALESCE(SUM(\(sql.jsonLength("j.waited_for"))), 0) AS waited,
                   COALESCE(SUM(j.substituted), 0) AS substituted,
                   COALESCE(SUM(CASE WHEN j.state = \(JobState.succeeded.sql)
                       THEN \(sql.greatest("0", "\(sql.jsonLength("j.derivations")) - \(sql.jsonLength("j.built")) - \(sql.jsonLength("j.waited_for"))"))
                       ELSE 0 END), 0) AS valid,
                   COUNT(j.cache_pushed_bytes) AS pushes,
                   COALESCE(SUM(j.cache_pushed_bytes), 0) AS pushed
            FROM jobs j JOIN builds b ON b.id = j.build_id
            WHERE \(filter) AND j.attempt > 0 AND j.started_at IS NOT NULL AND j.finished_at IS NOT NULL
            """
        let statementArguments = arguments
        return try await database.read { db in
            var statistics = BuildStatistics()
            var total = 0
            var weighted = 0.0
            for row in try db.rows(buildSQL, statementArguments) {
                guard let state = BuildState(rawValue: row["state"]) else { continue }
                let count: Int = row["n"]
                statistics.builds[state] = count
                if let seconds: Double = row["seconds"] {
                    total += count
                    weighted += seconds * Double(count)
                }
            }
            statistics.averageBuildSeconds = total == 0 ? nil : weighted / Double(total)
            if let row = try db.row(jobSQL, statementArguments) {
                statistics.jobSeconds = row["seconds"]
                statistics.outputs = row["outputs"]
                statistics.outputBytes = row["bytes"]
                statistics.activity = CacheActivity(
                    jobs: row["jobs"], built: row["built"], waitedFor: row["waited"], substituted: row["substituted"],
                    alreadyValid: row["valid"], pushes: row["pushes"], pushedBytes: row["pushed"])
            }
            return statistics
        }
    }

    public func jobHistory(_ query: JobHistoryQuery) async throws -> [(job: JobRecord, build: BuildRecord)] {
        var conditions: [String] = []
        var arguments: [(any SQLBindable)?] = []
        if let derivation = query.derivation {
            // As the column holds it: a JSON string (with its slashes escaped).
            let encoded = String(Rows.json([derivation]).dropFirst().dropLast())
            let escaped = encoded.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "%", with: "\\%")
                .replacingOccurrences(of: "_", with: "\\_")
            let pattern = "%" + escaped + "%"
            conditions.append("(derivations LIKE ? ESCAPE '\\' OR built LIKE ? ESCAPE '\\')")
            arguments += [pattern, pattern]
        }
        if let states = query.states {
            conditions.append("state IN (" + states.map { _ in "?" }.joined(separator: ", ") + ")")
            arguments += states.sorted { $0.rawValue < $1.rawValue }.map(\.rawValue)
        }
        if let from = query.queuedFrom {
            conditions.append("queued_at >= ?")
            arguments.append(from.timeIntervalSince1970)
        }
        if let to = query.queuedTo {
            conditions.append("queued_at < ?")
            arguments.append(to.timeIntervalSince1970)
        }
        if let before = query.before {
            conditions.append("id < ?")
            arguments.append(before)
        }
        let filter = conditions.isEmpty ? "" : "WHERE " + conditions.joined(separator: " AND ")
        arguments.append(max(1, query.limit))
        let sql = "SELECT * FROM jobs \(filter) ORDER BY id DESC LIMIT ?"
        let statementArguments = arguments
        return try await database.read { db in
            let jobs = try db.rows(sql, statementArguments).map(Rows.job)
            let ids = Set(jobs.map(\.buildID))
            guard !ids.isEmpty else { return [] }
            let builds = try db.rows("SELECT * FROM builds WHERE id IN (" + ids.map { _ in "?" }.joined(separator: ", ") + ")",
                Array(ids)
            ).map(Rows.build)
            let byID = Dictionary(uniqueKeysWithValues: builds.map { ($0.id, $0) })
            return jobs.compactMap { job in byID[job.buildID].map { (job, $0) } }
        }
    }

    public func builds(_ query: BuildListQuery) async throws -> [BuildRecord] {
        var conditions: [String] = []
        var arguments: [(any SQLBindable)?] = []
        func add(_ condition: String, _ value: (any SQLBindable)?) {
            conditions.append(condition)
            arguments.append(value)
        }
        if let forge = query.forge { add("forge = ?", forge) }
        if let repository = query.repository { add("repository = ?", repository) }
        if let branch = query.branch {
            add("ref = ?", "refs/heads/\(branch)")
            conditions.append("pr_number IS NULL")
        }
        if let state = query.state { add("state = ?", state.rawValue) }
        if let before = query.before { add("id < ?", before) }
        let (statementConditions, statementArguments) = (conditions, arguments)
        return try await database.read { db in
            var conditions = statementConditions
            var arguments = statementArguments
            // A repository's builds are found through its id, as builds_by_ref is keyed, so that
            // a page of a branch's builds reads that page and no more.
            if let forge = query.forge, let repository = query.repository {
                guard let id = try Self.repositoryID(forge: forge, name: repository, db) else { return [] }
                conditions.append("repository_id = ?")
                arguments.append(id)
            }
            let filter = conditions.isEmpty ? "" : "WHERE " + conditions.joined(separator: " AND ")
            return try db.rows("SELECT * FROM builds \(filter) ORDER BY id DESC LIMIT \(max(1, query.limit))", arguments).map(Rows.build)
        }
    }

    /// The id of the repository `name` on `forge`, if Kiln knows it.
    private static func repositoryID(forge: String, name: String, _ db: any SQLConnection) throws -> RepositoryID? {
        try db.value(RepositoryID.self, "SELECT id FROM repositories WHERE forge = ? AND name = ?", [forge, name])
    }

    public func branches(forge: String, repository: String) async throws -> [BuildRecord] {
        try await database.read { db in
            guard let id = try Self.repositoryID(forge: forge, name: repository, db) else { return [] }
            return try db.rows("""
                    SELECT * FROM builds WHERE id IN (
                      SELECT MAX(id) FROM builds
                      WHERE repository_id = ? AND forge = ? AND repository = ? AND pr_number IS NULL GROUP BY ref)
                    ORDER BY ref
                    """,
                [id, forge, repository]
            ).map(Rows.build)
        }
    }

    public func removeBuilds(endedBefore date: Date) async throws -> (builds: Int, jobs: [JobID]) {
        try await database.write { db in
            let cutoff = date.timeIntervalSince1970
            // The newest build of each branch and pull request stays: its badge and branch row
            // stay, and the reconciler does not build its head again.
            let old = """
                SELECT id FROM builds WHERE finished_at IS NOT NULL AND finished_at < ? AND id NOT IN (
                  SELECT MAX(id) FROM builds WHERE ad_hoc IS NULL GROUP BY repository_id, ref, pr_number)
                """
            let jobs = try db.values(JobID.self, "SELECT id FROM jobs WHERE build_id IN (\(old))", [cutoff])
            for table in ["status_outbox", "jobs", "deliveries"] {
                try db.execute("DELETE FROM \(table) WHERE build_id IN (\(old))", [cutoff])
            }
            // A kept build may have reused or re-run an old one: it keeps its own copies of the
            // jobs, and only loses the link (which would otherwise fail the whole clean-up).
            for column in ["reused_from", "rerun_of"] {
                try db.execute("UPDATE builds SET \(column) = NULL WHERE \(column) IN (\(old))", [cutoff])
            }
            let removed = try db.execute("DELETE FROM builds WHERE id IN (\(old))", [cutoff])
            return (removed, jobs)
        }
    }

    // MARK: Control

    public func recordedDerivations(sameTreeAs buildID: BuildID) async throws
        -> (build: BuildID, derivations: [String: [String]])?
    {
        try await database.read { db in
            guard
                let earlier = try db.value(BuildID.self, """
                        SELECT earlier.id FROM builds AS this JOIN builds AS earlier
                          ON earlier.repository_id = this.repository_id AND earlier.tree_key = this.tree_key AND earlier.id <> this.id
                        WHERE this.id = ? AND EXISTS (
                          SELECT 1 FROM jobs WHERE build_id = earlier.id AND derivations IS NOT NULL AND derivations <> '[]')
                        ORDER BY earlier.id DESC LIMIT 1
                        """,
                    [buildID])
            else { return nil }
            var derivations: [String: [String]] = [:]
            for job in try db.rows("SELECT * FROM jobs WHERE build_id = ?", [earlier]).map(Rows.job)
            where !job.derivations.isEmpty {
                derivations[job.name] = job.derivations
            }
            return (earlier, derivations)
        }
    }

    // MARK: Helpers inside a transaction

    func end(
        _ build: BuildRecord, _ state: BuildState, summary: String, at time: Double, _ db: any SQLConnection,
        diagnostics: [String] = []
    ) throws {
        try db.execute("UPDATE builds SET state = ?, summary = ?, diagnostics = ?, finished_at = ? WHERE id = ?",
            [state.rawValue, summary, Rows.json(diagnostics), time, build.id])
    }
}
