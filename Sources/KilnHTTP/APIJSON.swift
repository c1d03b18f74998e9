import Foundation
import KilnCore

/// `POST /webhooks/{forge}`'s answer for an accepted delivery.
struct AcceptedJSON: Encodable {
    var build_id: BuildID
    var new: Bool
    var url: String
    var message: String
}

/// A build in the API.
struct BuildJSON: Encodable {
    var id: BuildID
    var url: String
    var forge: String
    var repository: String
    var sha: String
    var ref: String
    var state: String
    var summary: String
    var diagnostics: [String]
    var created_at: Date
    var started_at: Date?
    var finished_at: Date?
    var duration_seconds: Double?
    var jobs: [JobJSON]?
    var statuses: [StatusJSON]?

    init(_ build: BuildRecord, jobs: [JobRecord]?, statuses: [OutboxEntry]?, _ publicURL: String) {
        id = build.id
        url = "\(publicURL)/builds/\(build.id)"
        forge = build.forge
        repository = build.repository
        sha = build.sha
        ref = build.ref
        state = build.state.rawValue
        summary = build.summary
        diagnostics = build.diagnostics
        created_at = build.createdAt
        started_at = build.startedAt
        finished_at = build.finishedAt
        duration_seconds = build.finishedAt.map { $0.timeIntervalSince(build.startedAt ?? build.createdAt) }
        self.jobs = jobs?.map { JobJSON($0, publicURL) }
        self.statuses = statuses?.map(StatusJSON.init)
    }
}

/// A job in the API.
struct JobJSON: Encodable {
    var id: JobID
    var build_id: BuildID
    var name: String
    var installables: [String]
    var needs: [String]
    var state: String
    var summary: String
    var exit_code: Int32?
    var outputs: [String]
    var attempt: Int
    var timeout_seconds: Int64
    var max_silent_seconds: Int64
    var queued_at: Date
    var start_time: Date?
    var finished_at: Date?
    var queue_seconds: Double?
    var duration_seconds: Double?
    var log_url: String

    init(_ job: JobRecord, _ publicURL: String) {
        id = job.id
        build_id = job.buildID
        name = job.name
        installables = job.installables
        needs = job.needs
        state = job.state.rawValue
        summary = job.summary
        exit_code = job.exitCode
        outputs = job.outputs
        attempt = job.attempt
        timeout_seconds = job.timeout.components.seconds
        max_silent_seconds = job.maxSilent.components.seconds
        queued_at = job.queuedAt
        start_time = job.startedAt
        finished_at = job.finishedAt
        queue_seconds = job.startedAt.map { $0.timeIntervalSince(job.queuedAt) }
        duration_seconds = job.startedAt.flatMap { start in job.finishedAt.map { $0.timeIntervalSince(start) } }
        log_url = "\(publicURL)/api/v1/jobs/\(job.id)/log"
    }
}

/// A commit status in the API.
struct StatusJSON: Encodable {
    var context: String
    var state: String
    var description: String
    var delivery: String
    var attempts: Int
    var last_error: String?
    var created_at: Date

    init(_ entry: OutboxEntry) {
        context = entry.status.context
        state = entry.status.state.rawValue
        description = entry.status.description
        delivery = entry.delivery.rawValue
        attempts = entry.attempts
        last_error = entry.lastError
        created_at = entry.createdAt
    }
}
