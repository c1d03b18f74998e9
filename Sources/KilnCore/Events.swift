import Foundation

/// Something that happened to a build, as `/api/v1/events` publishes it.
public struct KilnEvent: Sendable, Hashable {
    /// Its type: `build.queued`, `job.finished`, `built-path`, …
    public var type: String
    /// The build it concerns.
    public var buildID: BuildID?
    /// The job it concerns.
    public var jobID: JobID?
    /// The repository (`owner/name`), for filtering.
    public var repository: String?
    /// The event's JSON object, encoded.
    public var data: String

    /// Creates an event whose data is `fields` (JSON values: strings, numbers, booleans, arrays,
    /// objects, `NSNull`); the build and job ids are added to it.
    public init(type: String, buildID: BuildID?, jobID: JobID? = nil, repository: String?, fields: [String: Any] = [:]) {
        self.type = type
        self.buildID = buildID
        self.jobID = jobID
        self.repository = repository
        var object = fields
        if let buildID { object["build_id"] = buildID }
        if let jobID { object["job_id"] = jobID }
        if let repository { object["repository"] = repository }
        self.data = Self.encode(object)
    }

    /// Creates an event with data already encoded.
    public init(type: String, buildID: BuildID?, jobID: JobID?, repository: String?, data: String) {
        self.type = type
        self.buildID = buildID
        self.jobID = jobID
        self.repository = repository
        self.data = data
    }

    static func encode(_ object: [String: Any]) -> String {
        guard let data = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes]) else {
            return "{}"
        }
        return String(decoding: data, as: UTF8.self)
    }

    /// The event types a client may ask for.
    public static let types: Set<String> = [
        "build.queued", "build.planned", "build.started", "build.finished", "job.queued", "job.started", "job.progress",
        "job.finished", "status.posted", "status.failed", "built-path", "build-failure", "cache.warming", "cache.warmed",
    ]

    /// The types of Determinate Nixd's post-build events.
    public static let postBuildTypes: Set<String> = ["built-path", "build-failure"]
}

/// An event as the log keeps it: with its place in the sequence.
public struct StoredEvent: Sendable, Hashable {
    /// Strictly increasing.
    public var id: Int64
    /// The event.
    public var event: KilnEvent

    /// Creates a stored event.
    public init(id: Int64, event: KilnEvent) {
        self.id = id
        self.event = event
    }
}

/// Which events a client wants.
public struct EventQuery: Sendable, Hashable {
    /// Only this repository's.
    public var repository: String?
    /// Only this build's.
    public var build: BuildID?
    /// Only these types; nil for all.
    public var types: Set<String>?

    /// Creates a filter.
    public init(repository: String? = nil, build: BuildID? = nil, types: Set<String>? = nil) {
        self.repository = repository
        self.build = build
        self.types = types
    }
}

/// The durable event log: appended by the coordinator, read by every stream.
public protocol EventLog: Sendable {
    /// Appends events, in order, in one transaction.
    func appendEvents(_ events: [KilnEvent], at now: Date) async throws

    /// Events after `id` that pass `filter`, oldest first, at most `limit`.
    func events(after id: Int64, filter: EventQuery, limit: Int) async throws -> [StoredEvent]

    /// The oldest and newest ids the log holds; nil when it is empty.
    func eventRange() async throws -> ClosedRange<Int64>?

    /// Removes events older than `date`, and all but the newest `keep`.
    func pruneEvents(olderThan date: Date, keep: Int) async throws
}
