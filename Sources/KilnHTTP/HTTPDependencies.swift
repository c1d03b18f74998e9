import KilnCore
import Prometheus
import Synchronization

/// What the HTTP edge needs: intake for webhooks, the store for pages and the API,
/// readiness for `/health`. Handlers only translate between HTTP and these.
public struct HTTPDependencies: Sendable {
    /// Webhook intake.
    public var intake: WebhookIntake
    /// Builds, jobs and statuses, read.
    public var store: any BuildQueries
    /// Approvals, cancels and re-runs.
    public var coordinator: BuildCoordinator
    /// The event streams' doorbell and shutdown.
    public var eventStreams: EventStreams
    /// `server.admin-token-file`'s token: every scope.
    public var adminToken: Secret?
    /// API tokens (`kiln token create`); nil when there are none.
    public var tokens: (any TokenStore)?
    /// Pages, logs, the API, events and metrics need a `read` token.
    public var isPrivate: Bool
    /// Whether nix was confirmed usable.
    public var health: HealthState
    /// Running jobs' progress.
    public var progress: ProgressBoard
    /// Whether the database accepts writes.
    public var databaseWritable: @Sendable () async -> Bool
    /// Where job logs are.
    public var logs: JobLogs
    /// Largest webhook body accepted.
    public var maxBodyBytes: Int
    /// Webhook deliveries read at once.
    public var webhookSlots: Slots
    /// Base of links in pages and API answers.
    public var publicURL: String
    /// Where `/metrics` reads from; nil serves no metrics.
    public var metricsRegistry: PrometheusCollectorRegistry?
    /// Jobs the worker runs at once, for `kiln_worker_slots`.
    public var workerSlots: Int
    /// The cache service; nil serves no `/cache` and `/api/v1/cache`.
    public var cache: StoreKeeper?
    /// The build service; nil serves no `POST /api/v1/builds`.
    public var adHoc: (any AdHocBuilds)?
    /// Builds the Iglu Builder socket runs at once.
    public var igluSlots = 1

    /// Creates dependencies.
    public init(
        intake: WebhookIntake, coordinator: BuildCoordinator,
        adminToken: Secret?, health: HealthState, progress: ProgressBoard,
        databaseWritable: @escaping @Sendable () async -> Bool, paths: WorkerPaths, maxBodyBytes: Int,
        maxConcurrentWebhooks: Int = 64, maxEventStreams: Int = 1000, publicURL: String,
        metricsRegistry: PrometheusCollectorRegistry? = nil, workerSlots: Int = 1, tokens: (any TokenStore)? = nil,
        isPrivate: Bool = false
    ) {
        self.tokens = tokens
        self.isPrivate = isPrivate
        self.intake = intake
        self.store = coordinator.store
        self.coordinator = coordinator
        self.eventStreams = EventStreams(bell: coordinator.bells.events, limit: maxEventStreams)
        self.adminToken = adminToken
        self.health = health
        self.progress = progress
        self.databaseWritable = databaseWritable
        self.logs = JobLogs(paths)
        self.maxBodyBytes = maxBodyBytes
        self.webhookSlots = Slots(maxConcurrentWebhooks)
        self.publicURL = publicURL.hasSuffix("/") ? String(publicURL.dropLast()) : publicURL
        self.metricsRegistry = metricsRegistry
        self.workerSlots = workerSlots
    }
}

/// A fixed number of slots, taken without waiting: at most that many webhook bodies are read
/// (and held in memory) at once, however many connections a hostile sender opens.
public final class Slots: Sendable {
    private let free: Mutex<Int>

    /// `count` free slots.
    public init(_ count: Int) { free = Mutex(count) }

    /// Takes a slot; false when none is free.
    public func take() -> Bool {
        free.withLock { free in
            guard free > 0 else { return false }
            free -= 1
            return true
        }
    }

    /// Gives a slot back.
    public func give() { free.withLock { $0 += 1 } }
}
