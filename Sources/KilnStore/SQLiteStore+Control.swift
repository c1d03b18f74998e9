import Foundation
import GRDB
import KilnCore
import KilnPipeline

/// Decisions across builds: superseding, cancelling, approving, running again, reusing.
extension SQLiteStore {
    public func unfinishedBuilds(_ key: BuildKey, repository: RepositoryID, olderThan build: BuildID) async throws
        -> [BuildRecord]
    {
        try await database.read { db in
            let unfinished = "state IN ('queued', 'planning', 'running', 'awaiting_approval')"
            switch key {
            case .ref(let ref):
                return try Row.fetchAll(
                    db,
                    sql: "SELECT * FROM builds WHERE repository_id = ? AND ref = ? AND pr_number IS NULL AND id < ? AND \(unfinished) ORDER BY id",
                    arguments: [repository, ref, build]
                ).map(Rows.build)
            case .pullRequest(let number):
                return try Row.fetchAll(
                    db,
                    sql: "SELECT * FROM builds WHERE repository_id = ? AND pr_number = ? AND id < ? AND \(unfinished) ORDER BY id",
                    arguments: [repository, number, build]
                ).map(Rows.build)
            }
        }
    }

    public func cancel(_ builds: [BuildID], _ reason: CancelReason, at now: Date) async throws -> [JobID] {
        try await database.write { db in
            var running: [JobID] = []
            for buildID in builds {
                guard let row = try Row.fetchOne(db, sql: "SELECT * FROM builds WHERE id = ?", arguments: [buildID]) else {
                    continue
                }
                let build = try Rows.build(row)
                let jobs = try Row.fetchAll(db, sql: "SELECT * FROM jobs WHERE build_id = ? ORDER BY id", arguments: [buildID])
                    .map(Rows.job)
                var machine = BuildStateMachine(state: build.state, summary: build.summary)
                let actions = machine.cancel(reason, jobs: jobs)
                try apply(actions, to: build, at: now, db)
                for case .stopJobs(let jobs, _) in actions { running += jobs }
            }
            return running
        }
    }

    public func latestHead(pullRequest number: Int, repository: RepositoryID) async throws -> String? {
        try await database.read { db in
            try String.fetchOne(
                db, sql: "SELECT sha FROM builds WHERE repository_id = ? AND pr_number = ? ORDER BY id DESC LIMIT 1",
                arguments: [repository, number])
        }
    }

    public func isApproved(pullRequest number: Int, sha: String, repository: RepositoryID) async throws -> Bool {
        try await database.read { db in
            try Bool.fetchOne(
                db, sql: "SELECT 1 FROM approvals WHERE repository_id = ? AND pr_number = ? AND sha = ?",
                arguments: [repository, number, sha]) ?? false
        }
    }

    public func awaitingApproval(sha: String, repository: RepositoryID) async throws -> BuildID? {
        try await database.read { db in
            try BuildID.fetchOne(
                db,
                sql: "SELECT id FROM builds WHERE repository_id = ? AND sha = ? AND state = 'awaiting_approval' ORDER BY id DESC LIMIT 1",
                arguments: [repository, sha])
        }
    }

    public func approve(_ buildID: BuildID, sha: String, by approver: String, at now: Date) async throws -> ApprovalResult {
        try await database.write { db in
            guard let row = try Row.fetchOne(db, sql: "SELECT * FROM builds WHERE id = ?", arguments: [buildID]) else {
                return .notFound
            }
            var build = try Rows.build(row)
            guard build.state == .awaitingApproval, let pullRequest = build.pullRequest else { return .notAwaiting(build.state) }
            guard build.sha == sha else { return .differentCommit(current: build.sha) }
            try db.execute(
                sql: """
                    INSERT INTO approvals (repository_id, pr_number, sha, approved_by, approved_at) VALUES (?, ?, ?, ?, ?)
                    ON CONFLICT (repository_id, pr_number, sha) DO NOTHING
                    """,
                arguments: [build.repositoryID, pullRequest.number, sha, approver, now.timeIntervalSince1970])
            build.state = .queued
            build.summary = "approved by \(approver); queued"
            try db.execute(
                sql: "UPDATE builds SET state = 'queued', summary = ? WHERE id = ?", arguments: [build.summary, buildID])
            return .approved(build)
        }
    }

    public func rerun(sha: String, repository: RepositoryID, forge: String, deliveryID: String, at now: Date) async throws
        -> (buildID: BuildID, isNew: Bool)?
    {
        try await database.write { db in
            if let existing = try BuildID.fetchOne(
                db, sql: "SELECT build_id FROM deliveries WHERE forge = ? AND delivery_id = ?", arguments: [forge, deliveryID])
            {
                return (existing, false)
            }
            guard
                let row = try Row.fetchOne(
                    db, sql: "SELECT * FROM builds WHERE repository_id = ? AND sha = ? ORDER BY id DESC LIMIT 1",
                    arguments: [repository, sha])
            else { return nil }
            let original = try Rows.build(row)
            try db.execute(
                sql: """
                    INSERT INTO builds (repository_id, forge, repository, sha, ref, before_sha, state, summary, created_at,
                                        pr_number, pr_head_branch, pr_base_branch, pr_is_fork, pr_head_repository, rerun_of)
                    SELECT repository_id, forge, repository, sha, ref, before_sha, 'queued', ?, ?,
                           pr_number, pr_head_branch, pr_base_branch, pr_is_fork, pr_head_repository, id
                    FROM builds WHERE id = ?
                    """,
                arguments: ["queued again: a re-run of build #\(original.id)", now.timeIntervalSince1970, original.id])
            let buildID = db.lastInsertedRowID
            try db.execute(
                sql: "INSERT INTO deliveries (forge, delivery_id, build_id, received_at) VALUES (?, ?, ?, ?)",
                arguments: [forge, deliveryID, buildID, now.timeIntervalSince1970])
            return (buildID, true)
        }
    }

    public func reusableBuild(treeKey: String, repository: RepositoryID, excluding build: BuildID, trustedOnly: Bool)
        async throws -> BuildID?
    {
        try await database.read { db in
            try BuildID.fetchOne(
                db,
                sql: """
                    SELECT id FROM builds WHERE repository_id = ? AND tree_key = ? AND id <> ?
                      AND state IN ('succeeded', 'failed') AND (trusted = 1 OR ? = 0) ORDER BY id DESC LIMIT 1
                    """,
                arguments: [repository, treeKey, build, trustedOnly])
        }
    }
}
