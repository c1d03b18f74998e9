import Foundation
import GRDB
import KilnCore
import KilnPipeline

/// The event log: appended by the coordinator, read by every event stream.
extension SQLStore {
    public func appendEvents(_ events: [KilnEvent], at now: Date) async throws {
        guard !events.isEmpty else { return }
        try await database.write { db in
            db.announceWork()
            for event in events {
                try db.execute("INSERT INTO events (type, build_id, job_id, repository, data, created_at) VALUES (?, ?, ?, ?, ?, ?)",
                    [event.type, event.buildID, event.jobID, event.repository, event.data, now.timeIntervalSince1970])
            }
        }
    }

    public func events(after id: Int64, filter: EventQuery, limit: Int) async throws -> [StoredEvent] {
        var conditions = ["id > ?"]
        var arguments: [(any SQLBindable)?] = [id]
        if let repository = filter.repository {
            conditions.append("repository = ?")
            arguments.append(repository)
        }
        if let build = filter.build {
            conditions.append("build_id = ?")
            arguments.append(build)
        }
        if let types = filter.types {
            conditions.append("type IN (\(types.map { _ in "?" }.joined(separator: ", ")))")
            arguments += types.sorted().map { $0 }
        }
        let sql = "SELECT * FROM events WHERE \(conditions.joined(separator: " AND ")) ORDER BY id LIMIT \(max(1, limit))"
        let statementArguments = arguments
        return try await database.read { db in
            try db.rows(sql, statementArguments).map { row in
                StoredEvent(
                    id: row["id"],
                    event: KilnEvent(
                        type: row["type"], buildID: row["build_id"], jobID: row["job_id"], repository: row["repository"],
                        data: row["data"]))
            }
        }
    }

    public func eventRange() async throws -> ClosedRange<Int64>? {
        // Two subqueries: each is one step down the primary key, where `MIN(id), MAX(id)` in
        // one select reads the whole table.
        try await database.read { db in
            guard let row = try db.row("SELECT (SELECT MIN(id) FROM events) AS low, (SELECT MAX(id) FROM events) AS high"),
                let low = row["low"] as Int64?, let high = row["high"] as Int64?
            else { return nil }
            return low...high
        }
    }

    public func pruneEvents(olderThan date: Date, keep: Int) async throws {
        try await database.write { db in
            try db.execute("DELETE FROM events WHERE created_at < ?", [date.timeIntervalSince1970])
            try db.execute("DELETE FROM events WHERE id <= (SELECT MAX(id) FROM events) - ?", [max(0, keep)])
        }
    }
}
