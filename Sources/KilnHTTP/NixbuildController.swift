import Foundation
import Hummingbird
import KilnCore

/// Jobs as nixbuild.net's build records: `GET /api/v1/nixbuild/builds` in the shape of its
/// `GET /builds`, and `GET /api/v1/nixbuild/usage`. One Kiln job is one record.
struct NixbuildController: Sendable {
    let store: any BuildQueries
    /// What each record says of the machine: its cores, memory and nix system.
    let host: HostDescription

    /// What a record says of the machine a job ran on.
    struct HostDescription: Sendable {
        var cpuCount: Int
        var memoryMegabytes: Int
        var system: String

        static var current: HostDescription {
            var name = utsname()
            uname(&name)
            let machine = withUnsafeBytes(of: &name.machine) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            return HostDescription(
                cpuCount: ProcessInfo.processInfo.activeProcessorCount,
                memoryMegabytes: Int(ProcessInfo.processInfo.physicalMemory >> 20), system: "\(machine)-linux")
        }
    }

    /// nixbuild.net's statuses, and the job states each stands for.
    static let statuses: [String: Set<JobState>] = [
        "built": [.succeeded], "failed": [.failed], "timeout": [.timedOut], "cancelled": [.cancelled], "queued": [.queued],
        "running": [.running], "internal_error": [.errored],
    ]

    static func status(_ state: JobState) -> String {
        switch state {
        case .succeeded: return "built"
        case .failed: return "failed"
        case .timedOut: return "timeout"
        case .cancelled, .skipped: return "cancelled"
        case .queued: return "queued"
        case .running: return "running"
        case .errored: return "internal_error"
        }
    }

    var endpoints: RouteCollection<BasicRequestContext> {
        let routes = RouteCollection(context: BasicRequestContext.self)
        routes.get("/api/v1/nixbuild/builds") { request, _ in
            switch Self.parameters(request) {
            case .failure(let bad): return try JSONBody.error(.badRequest, bad.message)
            case .success(let (query, tags)): return try JSONBody.response(.ok, try await records(query, tags: tags))
            }
        }
        routes.get("/api/v1/nixbuild/usage") { request, _ in try await usage(request) }
        return routes
    }

    struct BadParameter: Error {
        var message: String
    }

    /// The query and tag filters a request asks for.
    static func parameters(_ request: Request) -> Result<(JobHistoryQuery, [(String, String)]), BadParameter> {
        let parameters = request.uri.queryParameters
        var query = JobHistoryQuery()
        query.derivation = parameters.get("derivation_path")
        if let status = parameters.get("status") {
            var states: Set<JobState> = []
            for name in status.split(separator: ",").map(String.init) {
                guard let matching = statuses[name] else {
                    return .failure(BadParameter(message: "status '\(name)' is not one of \(statuses.keys.sorted().joined(separator: ", "))"))
                }
                states.formUnion(matching)
            }
            query.states = states
        }
        for (key, keyPath) in [("create_time_from", \JobHistoryQuery.queuedFrom), ("create_time_to", \JobHistoryQuery.queuedTo)] {
            guard let text = parameters.get(key) else { continue }
            guard let date = Self.date(text) else {
                return .failure(BadParameter(message: "\(key) '\(text)' is not an ISO 8601 time such as 2026-11-30T07:00:00Z"))
            }
            query[keyPath: keyPath] = date
        }
        if let text = parameters.get("limit") {
            guard let limit = Int(text), (1...1000).contains(limit) else {
                return .failure(BadParameter(message: "limit '\(text)' must be a whole number from 1 to 1000"))
            }
            query.limit = limit
        }
        var tags: [(String, String)] = []
        if let text = parameters.get("tags") {
            for pair in text.split(separator: ",") {
                let parts = pair.split(separator: ":", maxSplits: 1).map(String.init)
                guard parts.count == 2, !parts[0].isEmpty else {
                    return .failure(BadParameter(message: "tags '\(text)' must be KEY:VALUE pairs separated by commas"))
                }
                tags.append((parts[0], parts[1]))
            }
        }
        return .success((query, tags))
    }

    static func date(_ text: String) -> Date? {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        if let date = formatter.date(from: text) { return date }
        formatter.formatOptions = [.withInternetDateTime]
        return formatter.date(from: text)
    }

    /// The records that pass `query` and carry every tag of `tags`, newest first. Tags are
    /// matched here, so the store is read a page at a time (at most 20,000 jobs per request).
    private func records(_ query: JobHistoryQuery, tags: [(String, String)]) async throws -> [NixbuildRecord] {
        var page = query
        page.limit = tags.isEmpty ? query.limit : 500
        var records: [NixbuildRecord] = []
        var scanned = 0
        while records.count < query.limit, scanned < 20_000 {
            let jobs = try await store.jobHistory(page)
            for (job, build) in jobs where job.state != .skipped {
                let record = NixbuildRecord(job, build, host: host)
                if tags.allSatisfy({ record.tags[$0.0] == $0.1 }) { records.append(record) }
                if records.count == query.limit { break }
            }
            scanned += jobs.count
            guard jobs.count == page.limit, let last = jobs.last?.job.id else { break }
            page.before = last
        }
        return records
    }

    /// `billable_cpu_seconds` and `billable_build_count`: the jobs that ran and ended from
    /// `from` (default 30 days ago) to `to` (default now), by when they were queued.
    private func usage(_ request: Request) async throws -> Response {
        let parameters = request.uri.queryParameters
        var bounds: [Date] = [Date().addingTimeInterval(-30 * 86400), Date()]
        for (index, key) in ["from", "to"].enumerated() {
            guard let text = parameters.get(key) else { continue }
            guard let date = Self.date(text) else {
                return try JSONBody.error(.badRequest, "\(key) '\(text)' is not an ISO 8601 time such as 2026-11-30T07:00:00Z")
            }
            bounds[index] = date
        }
        var page = JobHistoryQuery(
            states: [.succeeded, .failed, .timedOut, .cancelled, .errored], queuedFrom: bounds[0], queuedTo: bounds[1], limit: 1000)
        var cpu = 0.0
        var count = 0
        while true {
            let jobs = try await store.jobHistory(page)
            for (job, _) in jobs where job.startedAt != nil && job.attempt > 0 {
                cpu += job.cpuSeconds ?? 0
                count += 1
            }
            guard jobs.count == page.limit, let last = jobs.last?.job.id else { break }
            page.before = last
        }
        return try JSONBody.response(
            .ok, NixbuildUsage(from: bounds[0], to: bounds[1], billable_cpu_seconds: Int(cpu.rounded()), billable_build_count: count))
    }
}

struct NixbuildUsage: Encodable {
    var from: Date
    var to: Date
    var billable_cpu_seconds: Int
    var billable_build_count: Int
}

/// One job as a nixbuild.net build record.
struct NixbuildRecord: Encodable {
    struct Output: Encodable {
        var name: String
        var path: String
        var nar_hash: String?
        var nar_size_bytes: Int64?
    }

    var build_id: JobID
    var create_time: Date
    var start_time: Date?
    var queue_time_seconds: Double?
    var duration_seconds: Double?
    var status: String
    var status_message: String
    var cpu_count: Int
    var allocated_megabytes: Int
    var cpu_seconds: Int?
    var peak_memory_use_kilobytes: Int?
    var peak_storage_use_kilobytes: Int?
    var derivation_path: String?
    var outputs: [Output]
    var system: String
    var tags: [String: String]

    init(_ job: JobRecord, _ build: BuildRecord, host: NixbuildController.HostDescription) {
        build_id = job.id
        create_time = job.queuedAt
        start_time = job.startedAt
        queue_time_seconds = job.startedAt.map { $0.timeIntervalSince(job.queuedAt) }
        duration_seconds = job.startedAt.flatMap { start in job.finishedAt.map { $0.timeIntervalSince(start) } }
        status = NixbuildController.status(job.state)
        status_message = job.state == .succeeded ? "" : job.summary
        cpu_count = host.cpuCount
        allocated_megabytes = job.minMemory.map { max(1, $0 >> 20) } ?? host.memoryMegabytes
        cpu_seconds = job.cpuSeconds.map { Int($0.rounded()) }
        peak_memory_use_kilobytes = job.peakMemoryKilobytes
        peak_storage_use_kilobytes = job.peakStorageKilobytes
        derivation_path = job.derivations.first
        outputs = job.outputs.map { Output(name: $0.name, path: $0.path, nar_hash: $0.narHash, nar_size_bytes: $0.narSize) }
        system = job.system ?? host.system
        tags = job.tags.merging(["repository": build.repository, "ref": build.ref, "job": job.name]) { _, kiln in kiln }
    }
}
