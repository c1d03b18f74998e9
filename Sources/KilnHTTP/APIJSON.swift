import Foundation
import KilnCore
import KilnPipeline

/// `POST /webhooks/{forge}`'s answer for an accepted delivery: every build it made (a
/// Bitbucket push can move several refs), and the first one at the top for convenience.
struct AcceptedJSON: Encodable {
    struct Build: Encodable {
        var build_id: BuildID
        var new: Bool
        var url: String
    }

    var build_id: BuildID
    var new: Bool
    var url: String
    var builds: [Build]
    var message: String

    /// The same object as compact JSON with sorted keys, written by hand: this answer goes out
    /// for every delivery, and JSONEncoder was a twentieth of intake's time.
    var compactJSON: [UInt8] {
        func build(_ build: Build) -> String {
            "{\"build_id\":\(build.build_id),\"new\":\(build.new),\"url\":\(JSONText.quoted(build.url))}"
        }
        let text = "{\"build_id\":\(build_id),\"builds\":[\(builds.map(build).joined(separator: ","))],\"message\":"
            + "\(JSONText.quoted(message)),\"new\":\(new),\"url\":\(JSONText.quoted(url))}\n"
        return Array(text.utf8)
    }
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
    var pull_request: Int?
    var title: String?
    var trigger: String
    var trusted: Bool
    var built_sha: String?
    var rerun_of: Int64?
    var created_at: Date
    var started_at: Date?
    var finished_at: Date?
    var duration_seconds: Double?
    var jobs: [JobJSON]?
    var statuses: [StatusJSON]?
    /// An ad-hoc build's service and source.
    var service: String?
    var source: String?

    init(
        _ build: BuildRecord, jobs: [JobRecord]?, statuses: [OutboxEntry]?, _ publicURL: String,
        progress: ProgressBoard? = nil, logs: JobLogs? = nil
    ) {
        id = build.id
        url = "\(publicURL)/builds/\(build.id)"
        title = build.title
        trigger = Pages.trigger(build)
        forge = build.forge
        repository = build.repository
        sha = build.sha
        ref = build.ref
        state = build.state.rawValue
        summary = build.summary
        diagnostics = build.diagnostics
        pull_request = build.pullRequest?.number
        trusted = build.trusted
        built_sha = build.builtSHA
        rerun_of = build.rerunOf
        created_at = build.createdAt
        started_at = build.startedAt
        finished_at = build.finishedAt
        duration_seconds = build.finishedAt.map { $0.timeIntervalSince(build.startedAt ?? build.createdAt) }
        self.jobs = jobs?.map { job in
            JobJSON(
                job, publicURL, progress: progress?.progress(job.id),
                derivationLogs: logs?.derivations(job.id) ?? [])
        }
        self.statuses = statuses?.map(StatusJSON.init)
        service = build.service
        source = build.adHoc?.origin
    }
}

/// A job in the API; accounting fields follow nixbuild.net's build record where it has them.
struct JobJSON: Encodable {
    struct Target: Encodable {
        var kind: String
        var installables: [String]?
        var file: String?
        var attr: String?
    }

    struct Output: Encodable {
        var name: String
        var path: String
        var nar_hash: String?
        var nar_size_bytes: Int64?
    }

    struct DerivationLog: Encodable {
        var derivation: String
        var url: String
    }

    struct Progress: Encodable {
        var done: Int
        var expected: Int
        var failed: Int
        var building: String?
    }

    var id: JobID
    var build_id: BuildID
    var name: String
    var system: String?
    var target: Target
    var needs: [String]
    var state: String
    var outcome: String
    var summary: String
    var allow_failure: Bool
    var exit_code: Int32?
    var derivations: [String]
    var built_derivations: [String]
    var waited_for_derivations: [String]
    /// The remote builders that built any of it.
    var machines: [String]
    /// The Kiln instance that runs (or last ran) it; `/health` names each instance.
    var instance: String?
    var outputs: [Output]
    var attempt: Int
    var timeout_seconds: Int64
    var max_silent_seconds: Int64
    var min_memory_bytes: Int?
    var queued_at: Date
    var start_time: Date?
    var finished_at: Date?
    var queue_seconds: Double?
    var duration_seconds: Double?
    var cpu_seconds: Double?
    var peak_memory_kilobytes: Int?
    var cache: String?
    var image: ImageJSON?
    var progress: Progress?
    var log_url: String
    var derivation_logs: [DerivationLog]

    init(_ job: JobRecord, _ publicURL: String, progress: JobProgress? = nil, derivationLogs: [String] = []) {
        id = job.id
        build_id = job.buildID
        name = job.name
        system = job.system
        switch job.target {
        case .installables(let installables): target = Target(kind: "build", installables: installables)
        case .classic(let file, let attribute): target = Target(kind: "file", file: file, attr: attribute)
        case .flakeCheck: target = Target(kind: "check")
        }
        needs = job.needs
        state = job.state.rawValue
        outcome = job.state.isFinal ? job.state.rawValue : "pending"
        summary = job.summary
        allow_failure = job.allowFailure
        exit_code = job.exitCode
        derivations = job.derivations
        built_derivations = job.built
        waited_for_derivations = job.waitedFor
        machines = job.machines
        instance = job.owner
        outputs = job.outputs.map { Output(name: $0.name, path: $0.path, nar_hash: $0.narHash, nar_size_bytes: $0.narSize) }
        attempt = job.attempt
        timeout_seconds = job.timeout.components.seconds
        max_silent_seconds = job.maxSilent.components.seconds
        min_memory_bytes = job.minMemory
        queued_at = job.queuedAt
        start_time = job.startedAt
        finished_at = job.finishedAt
        queue_seconds = job.startedAt.map { $0.timeIntervalSince(job.queuedAt) }
        duration_seconds = job.startedAt.flatMap { start in job.finishedAt.map { $0.timeIntervalSince(start) } }
        cpu_seconds = job.cpuSeconds
        peak_memory_kilobytes = job.peakMemoryKilobytes
        cache = job.cacheSummary
        image = job.image.map { ImageJSON($0, push: job.imagePush) }
        self.progress = progress.map { Progress(done: $0.done, expected: $0.expected, failed: $0.failed, building: $0.building) }
        log_url = "\(publicURL)/api/v1/jobs/\(job.id)/log"
        derivation_logs = derivationLogs.map {
            DerivationLog(derivation: $0, url: "\(publicURL)/api/v1/jobs/\(job.id)/log?derivation=\($0)")
        }
    }
}

/// A job's image in the API: what the pipeline asks for, and what became of the push.
struct ImageJSON: Encodable {
    struct Layer: Encodable {
        var digest: String
        var size_bytes: Int64
    }

    var repository: String
    var tags: [String]
    var required: Bool
    var push: String?
    var pushed_to: String?
    var pushed_tags: [String]?
    var digest: String?
    var size_bytes: Int64?
    var layers: [Layer]?
    var attempts: Int?
    var fallback: Bool?
    var summary: String?

    init(_ spec: ImageSpec, push result: ImagePushResult?) {
        repository = spec.repository
        tags = spec.tags
        required = spec.required
        push = result?.outcome.rawValue
        pushed_to = result?.repository
        pushed_tags = result.map(\.tags)
        digest = result?.digest
        size_bytes = result?.size
        layers = result.map { $0.layers.map { Layer(digest: $0.digest, size_bytes: $0.size) } }
        attempts = result?.attempts
        fallback = result?.usedFallback
        summary = result?.summary
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
