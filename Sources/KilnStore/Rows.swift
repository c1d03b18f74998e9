import Foundation
import GRDB
import KilnCore
import KilnPipeline

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

    static func build(_ row: SQLRow) throws -> BuildRecord {
        var build = BuildRecord(
            id: row["id"], repositoryID: row["repository_id"], forge: row["forge"], repository: row["repository"],
            sha: row["sha"], ref: row["ref"], state: try enumValue(BuildState.self, row["state"], column: "builds.state"),
            summary: row["summary"], diagnostics: try strings(row["diagnostics"], column: "builds.diagnostics"),
            createdAt: date(row["created_at"])!, startedAt: date(row["started_at"]), finishedAt: date(row["finished_at"]),
            beforeSHA: row["before_sha"], pullRequest: pullRequest(row), trusted: row["trusted"], builtSHA: row["built_sha"],
            rerunOf: row["rerun_of"], cancelReason: row["cancel_reason"],
            title: row["title"])
        build.rerunFailedOnly = row["rerun_failed_only"] ?? false
        build.treeKey = row["tree_key"]
        build.service = row["service"]
        build.reconciled = row["reconciled"]
        build.owner = row["owner"]
        build.leaseUntil = date(row["lease_until"])
        if let plan: String = row["ad_hoc"] { build.adHoc = try decode(AdHocPlan.self, plan, column: "builds.ad_hoc") }
        return build
    }

    static func pullRequest(_ row: SQLRow) -> PullRequestInfo? {
        guard let number: Int = row["pr_number"] else { return nil }
        return PullRequestInfo(
            number: number, headBranch: row["pr_head_branch"] ?? "", baseBranch: row["pr_base_branch"] ?? "",
            isFork: row["pr_is_fork"], headRepository: row["pr_head_repository"])
    }

    static func job(_ row: SQLRow) throws -> JobRecord {
        let installables = try strings(row["installables"], column: "jobs.installables")
        let target: JobTarget
        if let json: String = row["target"] {
            target = try decode(JobTarget.self, json, column: "jobs.target")
        } else {
            target = .installables(installables)  // rows written before v2
        }
        var job = JobRecord(
            id: row["id"], buildID: row["build_id"], name: row["name"], target: target, system: row["system"],
            needs: try strings(row["needs"], column: "jobs.needs"),
            timeout: .seconds(row["timeout_seconds"] as Int64),
            maxSilent: .seconds(row["max_silent_seconds"] as Int64), allowFailure: row["allow_failure"],
            cachePush: row["cache_push"], minMemory: row["min_memory"],
            state: try enumValue(JobState.self, row["state"], column: "jobs.state"), summary: row["summary"],
            exitCode: row["exit_code"], derivations: try strings(row["derivations"], column: "jobs.derivations"),
            outputs: try outputs(row["outputs"]), cpuSeconds: row["cpu_seconds"], peakMemoryKilobytes: row["peak_memory_kb"],
            cacheSummary: row["cache_summary"], attempt: row["attempt"], queuedAt: date(row["queued_at"])!,
            startedAt: date(row["started_at"]), finishedAt: date(row["finished_at"]))
        job.built = try strings(row["built"], column: "jobs.built")
        job.waitedFor = try strings(row["waited_for"], column: "jobs.waited_for")
        job.machines = try strings(row["machines"], column: "jobs.machines")
        job.owner = row["owner"]
        job.leaseUntil = date(row["lease_until"])
        if let image: String = row["image"] { job.image = try decode(ImageSpec.self, image, column: "jobs.image") }
        job.substituted = row["substituted"] ?? 0
        job.peakStorageKilobytes = row["peak_storage_kb"]
        if let tags: String = row["tags"] { job.tags = try decode([String: String].self, tags, column: "jobs.tags") }
        if let constraints: String = row["constraints"] {
            job.constraints = try decode(BuildConstraints.self, constraints, column: "jobs.constraints")
        }
        job.cachePushedBytes = row["cache_pushed_bytes"]
        if let push: String = row["image_push"] { job.imagePush = try decode(ImagePushResult.self, push, column: "jobs.image_push") }
        return job
    }

    /// Outputs as objects; rows written before v2 hold bare store paths.
    static func outputs(_ text: String) throws -> [BuiltOutput] {
        if let outputs = try? JSONDecoder().decode([BuiltOutput].self, from: Data(text.utf8)) { return outputs }
        return try strings(text, column: "jobs.outputs").map { BuiltOutput(name: "out", path: $0) }
    }

    static func encode(_ value: some Encodable) -> String {
        String(decoding: try! JSONEncoder().encode(value), as: UTF8.self)
    }

    static func decode<T: Decodable>(_ type: T.Type, _ text: String, column: String) throws -> T {
        do {
            return try JSONDecoder().decode(type, from: Data(text.utf8))
        } catch {
            throw StoreError.corrupt("\(column) cannot be read: \(text.prefix(80))")
        }
    }

    static func outbox(_ row: SQLRow) throws -> OutboxEntry {
        OutboxEntry(
            id: row["id"], buildID: row["build_id"], forge: row["forge"],
            commit: CommitRef(repository: row["repository"], sha: row["sha"], branch: row["branch"]),
            status: StatusUpdate(
                context: row["context"], state: try enumValue(StatusState.self, row["state"], column: "status_outbox.state"),
                description: row["description"], details: row["details"]),
            delivery: try enumValue(OutboxEntry.Delivery.self, row["delivery"], column: "status_outbox.delivery"),
            attempts: row["attempts"], nextAttemptAt: date(row["next_attempt_at"])!, lastError: row["last_error"],
            createdAt: date(row["created_at"])!)
    }
}

/// States as SQL literals, from their raw values (constants, never input): queries name the
/// Swift cases, not strings of their own.
extension RawRepresentable where RawValue == String {
    /// `'raw'`.
    var sql: String { "'\(rawValue)'" }
}

extension Sequence where Element: RawRepresentable, Element.RawValue == String {
    /// `'a', 'b'`, for `IN (…)`.
    var sql: String { map(\.sql).joined(separator: ", ") }
}
