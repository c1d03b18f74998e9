import Foundation
import GRDB
import KilnCore

/// Conversions between rows and records. Timestamps are stored as seconds since 1970.
enum Rows {
    static func date(_ value: Double?) -> Date? { value.map(Date.init(timeIntervalSince1970:)) }

    static func json(_ strings: [String]) -> String {
        String(decoding: try! JSONEncoder().encode(strings), as: UTF8.self)
    }

    static func strings(_ text: String, column: String) throws -> [String] {
        do {
            return try JSONDecoder().decode([String].self, from: Data(text.utf8))
        } catch {
            throw StoreError.corrupt("\(column) is not a JSON list of strings: \(text.prefix(80))")
        }
    }

    static func enumValue<T: RawRepresentable>(_ type: T.Type, _ raw: String, column: String) throws -> T
    where T.RawValue == String {
        guard let value = T(rawValue: raw) else { throw StoreError.corrupt("\(column) '\(raw)'") }
        return value
    }

    static func build(_ row: Row) throws -> BuildRecord {
        BuildRecord(
            id: row["id"], repositoryID: row["repository_id"], forge: row["forge"], repository: row["repository"],
            sha: row["sha"], ref: row["ref"], state: try enumValue(BuildState.self, row["state"], column: "builds.state"),
            summary: row["summary"], diagnostics: try strings(row["diagnostics"], column: "builds.diagnostics"),
            createdAt: date(row["created_at"])!, startedAt: date(row["started_at"]), finishedAt: date(row["finished_at"]))
    }

    static func job(_ row: Row) throws -> JobRecord {
        JobRecord(
            id: row["id"], buildID: row["build_id"], name: row["name"],
            installables: try strings(row["installables"], column: "jobs.installables"),
            needs: try strings(row["needs"], column: "jobs.needs"),
            timeout: .seconds(row["timeout_seconds"] as Int64),
            maxSilent: .seconds(row["max_silent_seconds"] as Int64),
            state: try enumValue(JobState.self, row["state"], column: "jobs.state"), summary: row["summary"],
            exitCode: row["exit_code"], outputs: try strings(row["outputs"], column: "jobs.outputs"),
            attempt: row["attempt"], queuedAt: date(row["queued_at"])!, startedAt: date(row["started_at"]),
            finishedAt: date(row["finished_at"]))
    }

    static func outbox(_ row: Row) throws -> OutboxEntry {
        OutboxEntry(
            id: row["id"], buildID: row["build_id"], forge: row["forge"],
            commit: CommitRef(repository: row["repository"], sha: row["sha"]),
            status: StatusUpdate(
                context: row["context"], state: try enumValue(StatusState.self, row["state"], column: "status_outbox.state"),
                description: row["description"]),
            delivery: try enumValue(OutboxEntry.Delivery.self, row["delivery"], column: "status_outbox.delivery"),
            attempts: row["attempts"], nextAttemptAt: date(row["next_attempt_at"])!, lastError: row["last_error"],
            createdAt: date(row["created_at"])!)
    }
}
