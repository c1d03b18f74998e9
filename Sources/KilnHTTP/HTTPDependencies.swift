import KilnCore

/// What the HTTP edge needs: intake for webhooks, the store for pages and the API,
/// readiness for `/health`. Handlers only translate between HTTP and these.
public struct HTTPDependencies: Sendable {
    /// Webhook intake.
    public var intake: WebhookIntake
    /// Builds, jobs and statuses.
    public var store: any BuildStore
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
        intake: WebhookIntake, store: any BuildStore, health: HealthState, progress: ProgressBoard,
        databaseWritable: @escaping @Sendable () async -> Bool, paths: WorkerPaths, maxBodyBytes: Int, publicURL: String
    ) {
        self.intake = intake
        self.store = store
        self.health = health
        self.progress = progress
        self.databaseWritable = databaseWritable
        self.paths = paths
        self.maxBodyBytes = maxBodyBytes
        self.publicURL = publicURL.hasSuffix("/") ? String(publicURL.dropLast()) : publicURL
    }
}
