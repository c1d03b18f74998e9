import Foundation
import GRDB
import KilnCore
import KilnPipeline

/// Decisions across builds: superseding, cancelling, approving, running again, reusing.
extension SQLStore {
    public func unfinishedBuilds(_ key: BuildKey, repository: RepositoryID, olderThan build: BuildID) async throws
        -> [BuildRecord]
    {
        try await database.read { db in
            let unfinished = "state IN (\([BuildState.queued, .planning, .running, .awaitingApproval].sql))"
            switch key {
            case .ref(let ref):
                return try db.rows("SELECT * FROM builds WHERE repository_id = ? AND ref = ? AND pr_number IS NULL AND id < ? AND \(unfinished) ORDER BY id",
                    [repository, ref, build]
                ).map(Rows.build)
            case .pullRequest(let number):
                return try db.rows("SELECT * FROM builds WHERE repository_id = ? AND pr_number = ? AND id < ? AND \(unfinished) ORDER BY id",
                    [repository, number, build]
                ).map(Rows.build)
            }
        }
    }

    public func hasBuild(sha: String, ref: String?, pullRequest: Int?, repository: RepositoryID) async throws -> Bool {
        try await database.read { db in
            // Either id may be the other's prefix: Bitbucket Cloud lists 12 digits, the build keeps all 40.
            let commit = "(substr(sha, 1, length(?)) = ? OR substr(?, 1, length(sha)) = sha)"
            if let pullRequest {
                return try db.value(
                    Bool.self, "SELECT 1 FROM builds WHERE repository_id = ? AND pr_number = ? AND \(commit) LIMIT 1",
                    [repository, pullRequest, sha, sha, sha]) ?? false
            }
            return try db.value(
                Bool.self, "SELECT 1 FROM builds WHERE repository_id = ? AND pr_number IS NULL AND ref = ? AND \(commit) LIMIT 1",
                [repository, ref ?? "", sha, sha, sha]) ?? false
        }
    }

    public func latestHead(pullRequest number: Int, repository: RepositoryID) async throws -> String? {
        try await database.read { db in
            try db.value(String.self, "SELECT sha FROM builds WHERE repository_id = ? AND pr_number = ? ORDER BY id DESC LIMIT 1",
                [repository, number])
        }
    }

    public func isApproved(pullRequest number: Int, sha: String, repository: RepositoryID) async throws -> Bool {
        try await database.read { db in
            try db.value(Bool.self, "SELECT 1 FROM approvals WHERE repository_id = ? AND pr_number = ? AND sha = ?",
                [repository, number, sha]) ?? false
        }
    }

    public func awaitingApproval(sha: String, repository: RepositoryID) async throws -> BuildID? {
        try await database.read { db in
            try db.value(BuildID.self, "SELECT id FROM builds WHERE repository_id = ? AND sha = ? AND state = \(BuildState.awaitingApproval.sql) ORDER BY id DESC LIMIT 1",
                [repository, sha])
        }
    }

    public func rerun(
        sha: String, of build: BuildID?, repository: RepositoryID, forge: String, deliveryID: String, failedOnly: Bool, at now: Date,
        summary: @Sendable (BuildID) -> String
    ) async throws -> (buildID: BuildID, isNew: Bool)? {
        try await database.write { db in
            if let existing = try db.value(BuildID.self, "SELECT build_id FROM deliveries WHERE forge = ? AND delivery_id = ?", [forge, deliveryID])
            {
                return (existing, false)
            }
            var row: SQLRow?
            if let build {
                row = try db.row("SELECT * FROM builds WHERE id = ? AND repository_id = ?", [build, repository])
            } else {
                row = try db.row("SELECT * FROM builds WHERE repository_id = ? AND sha = ? ORDER BY id DESC LIMIT 1", [repository, sha])
            }
            guard let row else { return nil }
            let original = try Rows.build(row)
            guard
                let buildID = try db.value(
                    BuildID.self,
                    """
                    INSERT INTO builds (repository_id, forge, repository, sha, ref, before_sha, state, summary, created_at,
                                        pr_number, pr_head_branch, pr_base_branch, pr_is_fork, pr_head_repository, rerun_of,
                                        rerun_failed_only)
                    SELECT repository_id, forge, repository, sha, ref, before_sha, ?, ?, ?,
                           pr_number, pr_head_branch, pr_base_branch, pr_is_fork, pr_head_repository, id, ?
                    FROM builds WHERE id = ?
                    RETURNING id
                    """,
                    [BuildState.queued.rawValue, summary(original.id), now.timeIntervalSince1970, failedOnly, original.id])
            else { throw StoreError.corrupt("build \(original.id) vanished while it was run again") }
            try db.execute("INSERT INTO deliveries (forge, delivery_id, build_id, received_at) VALUES (?, ?, ?, ?)",
                [forge, deliveryID, buildID, now.timeIntervalSince1970])
            return (buildID, true)
        }
    }

    public func reusableBuild(treeKey: String, repository: RepositoryID, excluding build: BuildID, trustedOnly: Bool)
        async throws -> BuildID?
    {
        try await database.read { db in
            try db.value(BuildID.self, """
                    SELECT id FROM builds WHERE repository_id = ? AND tree_key = ? AND id <> ?
                      AND state IN (\([BuildState.succeeded, .failed].sql)) AND (trusted = 1 OR ? = 0) ORDER BY id DESC LIMIT 1
                    """,
                [repository, treeKey, build, trustedOnly])
        }
    }
}
