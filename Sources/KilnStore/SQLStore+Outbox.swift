import Foundation
import GRDB
import KilnCore
import KilnPipeline

/// The status outbox: what is due, what became of it, and adding to it.
extension SQLStore {
    /// Claims the due entries for this instance (until `statusLease` from now), so that another
    /// instance never posts them too. An entry waits while another of its commit and context is
    /// being posted (claimed, its lease running), so that posts for a context never overtake.
    public func dueStatuses(at now: Date, limit: Int) async throws -> (due: [OutboxEntry], nextDue: Date?) {
        let greatest = database.dialect.greatest("next_attempt_at", "COALESCE(lease_until, 0)")
        return try await database.write { [lease] db in
            let time = now.timeIntervalSince1970
            let due = try db.rows(
                """
                SELECT * FROM status_outbox o
                WHERE delivery = 'pending' AND next_attempt_at <= ? AND (lease_until IS NULL OR lease_until < ?)
                  AND NOT EXISTS (
                    SELECT 1 FROM status_outbox s
                    WHERE s.sha = o.sha AND s.context = o.context AND s.forge = o.forge AND s.repository = o.repository
                      AND s.id <> o.id AND s.lease_until >= ?)
                ORDER BY id LIMIT ?
                """,
                [time, time, time, limit]
            ).map(Rows.outbox)
            for entry in due {
                try db.execute(
                    "UPDATE status_outbox SET owner = ?, lease_until = ? WHERE id = ?", [lease.owner, time + Self.statusLease, entry.id])
            }
            let next = try db.value(
                Double.self, "SELECT MIN(\(greatest)) FROM status_outbox WHERE delivery = 'pending' AND \(greatest) > ?", [time])
            return (due, Rows.date(next))
        }
    }

    /// How long an instance holds the statuses it is posting (a post takes at most 15 s a try).
    static let statusLease: TimeInterval = 60

    public func releaseStatusClaims(endedBy cutoff: Date) async throws {
        try await database.write { db in
            try db.execute("UPDATE status_outbox SET lease_until = NULL WHERE lease_until < ?", [cutoff.timeIntervalSince1970])
        }
    }

    public func recordStatusDelivery(_ entryID: Int64, _ result: StatusDeliveryResult, at now: Date) async throws {
        try await database.write { db in
            let time = now.timeIntervalSince1970
            // Posted or not, the claim ends: the next post of its context may go.
            try db.execute("UPDATE status_outbox SET lease_until = NULL WHERE id = ?", [entryID])
            switch result {
            case .delivered, .recorded:
                try db.execute("""
                        UPDATE status_outbox SET delivery = ?, attempts = attempts + ?, delivered_at = ?, last_error = NULL
                        WHERE id = ?
                        """,
                    [result == .delivered ? "delivered" : "recorded", result == .delivered ? 1 : 0, time, entryID])
            case .retry(let at, let error):
                // A newer status may have superseded this one while it was being posted: then it stays superseded.
                try db.execute("""
                        UPDATE status_outbox SET attempts = attempts + 1, next_attempt_at = ?, last_error = ?
                        WHERE id = ? AND delivery = 'pending'
                        """,
                    [at.timeIntervalSince1970, error, entryID])
            case .dropped(let error):
                try db.execute("UPDATE status_outbox SET delivery = 'dropped', attempts = attempts + 1, last_error = ? WHERE id = ?",
                    [error, entryID])
            }
        }
    }

    /// Adds statuses to the outbox. An older status for the same commit and context that
    /// has not been sent yet is superseded: only the newest is worth posting, and this keeps
    /// at most one pending entry per context, so posts for a context never overtake.
    func enqueue(_ statuses: [StatusUpdate], for build: BuildRecord, at now: Date, _ db: any SQLConnection) throws {
        let time = now.timeIntervalSince1970
        for status in statuses {
            try db.execute("""
                    UPDATE status_outbox SET delivery = 'superseded'
                    WHERE delivery = 'pending' AND forge = ? AND repository = ? AND sha = ? AND context = ?
                    """,
                [build.forge, build.repository, build.sha, status.context])
            try db.execute("""
                    INSERT INTO status_outbox (build_id, forge, repository, sha, branch, context, state, description, details,
                                               delivery, next_attempt_at, created_at)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'pending', ?, ?)
                    """,
                [
                    build.id, build.forge, build.repository, build.sha, build.statusBranch, status.context,
                    status.state.rawValue, status.description, status.details, time, time,
                ])
        }
    }
}
