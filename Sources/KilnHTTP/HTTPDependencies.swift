import KilnCore

/// What the HTTP edge needs: intake for webhooks, the store for pages and the API,
/// readiness for `/health`. Handlers only translate between HTTP and these.
public struct HTTPDependencies: Sendable {
    /// Webhook intake.
    public var intake: WebhookIntake
    /// Builds, jobs and statuses.
    public var store: any BuildQueries & BuildControl
    /// Running jobs, to stop those of a cancelled build.
    public var running: RunningJobs
    /// Rung when an approval or a re-run queues a build (planning), or a cancellation enqueues statuses.
    public var bells: Doorbells
    /// The bearer token of the control API (approvals, cancel, re-run); nil disables it.
    public var adminToken: Secret?
    /// Whether nix was confirmed usable.
    public var health: HealthState
    /// Running jobs' progress.
    public var progress: ProgressBoard
    /// Whether the database accepts writes.
    public var databaseWritable: @Sendable () async -> Bool
    /// Where job logs are.
    public var paths: WorkerPaths
    /// Largest webhook body accepted.
    public var maxBodyBytes: Int
    /// Base of links in pages and API answers.
    public var publicURL: String

    /// Creates dependencies.
    public init(
        intake: WebhookIntake, store: any BuildQueries & BuildControl, running: RunningJobs, bells: Doorbells,
        adminToken: Secret?, health: HealthState, progress: ProgressBoard,
        databaseWritable: @escaping @Sendable () async -> Bool, paths: WorkerPaths, maxBodyBytes: Int, publicURL: String
    ) {
        self.intake = intake
        self.store = store
        self.running = running
        self.bells = bells
        self.adminToken = adminToken
        self.health = health
        self.progress = progress
        self.databaseWritable = databaseWritable
        self.paths = paths
        self.maxBodyBytes = maxBodyBytes
        self.publicURL = publicURL.hasSuffix("/") ? String(publicURL.dropLast()) : publicURL
    }
}
