import Foundation
import Hummingbird
import HummingbirdWebSocket
import KilnCore
import KilnForges
import KilnGit
import KilnHTTP
import KilnNix
import KilnStore
import Logging
import Prometheus
import ServiceLifecycle
import UnixSignals

/// The one place where implementations are chosen and wired into a `ServiceGroup`.
public enum KilnServer {
    /// The adapter of a configured forge, and how git authenticates to its repositories.
    static func makeForge(_ forge: KilnConfiguration.Forge) -> (any Forge, GitCredentials) {
        let user = forge.type.cloneUser
        let credentials = forge.settings.token.map { GitCredentials.token(user: user, $0) } ?? .none
        switch forge.settings {
        case .github(let settings):
            if case .app(let app) = settings.credentials { return (GitHubForge(settings: settings), .source(user: user, app)) }
            return (GitHubForge(settings: settings), credentials)
        case .gitlab(let settings): return (GitLabForge(settings: settings), credentials)
        case .bitbucketCloud(let settings, _): return (BitbucketCloudForge(settings: settings), credentials)
        case .bitbucketServer(let settings): return (BitbucketServerForge(settings: settings), credentials)
        case .gitea(let settings): return (GiteaForge(settings: settings), credentials)
        }
    }

    /// The configured database: `storage.database` (PostgreSQL), or `kiln.sqlite` in the data directory.
    public static func openStore(_ configuration: KilnConfiguration, logger: Logger) async throws -> SQLStore {
        if let location = configuration.storage.database { return try await SQLStore.postgres(location, logger: logger) }
        try FileManager.default.createDirectory(atPath: configuration.storage.dataDirectory, withIntermediateDirectories: true)
        return try SQLStore(path: configuration.storage.dataDirectory + "/kiln.sqlite")
    }

    /// The API tokens of the configured database (`kiln token`).
    public static func tokenStore(_ configuration: KilnConfiguration, logger: Logger) async throws -> any TokenStore {
        try await openStore(configuration, logger: logger)
    }

    /// The cache service's settings from the configuration.
    static func storeKeeperSettings(_ configuration: KilnConfiguration) -> StoreKeeper.Settings {
        let cache = configuration.nix.settings.cache.map { cache in
            BinaryCacheLocation(
                display: cache.displayURL,
                directory: cache.pushTo.hasPrefix("file://") ? URLComponents(string: cache.pushTo)?.path : nil)
        }
        return StoreKeeper.Settings(
            keepOutputs: configuration.storage.keepOutputs, minFree: configuration.storage.minFree, warm: configuration.nix.warm,
            roots: configuration.storage.dataDirectory + "/gcroots", binaryCache: cache)
    }

    /// `kiln gc --store` and `--optimise`: collects the store (down to `storage.min-free`, or
    /// everything no root keeps when it is not set) and hard-links identical files.
    public static func collectStore(_ configuration: KilnConfiguration, collect: Bool, optimise: Bool, logger: Logger) async throws
        -> (collected: CollectedGarbage?, saved: Int64?)
    {
        let store = try await openStore(configuration, logger: logger)
        let executor = NixExecutor(settings: configuration.nix.settings)
        let keeper = StoreKeeper(
            coordinator: BuildCoordinator(store: store, logger: logger), maintenance: executor,
            repositories: configuration.repositories.map { ($0.forge, $0.name) }, settings: storeKeeperSettings(configuration),
            logger: logger)
        // The roots first: what the last builds of each branch built stays.
        try await keeper.syncRoots()
        var collected: CollectedGarbage?
        if !collect {
            collected = nil
        } else if let minFree = configuration.storage.minFree {
            collected = try await keeper.collect(minFree: minFree)
        } else {
            collected = try await executor.collectGarbage(maxFreed: nil)
        }
        return (collected, optimise ? try await executor.optimise() : nil)
    }

    /// `kiln gc`: removes builds and logs older than `storage.retention` once; returns how many builds and jobs went.
    public static func collectGarbage(_ configuration: KilnConfiguration, logger: Logger) async throws -> (builds: Int, jobs: Int) {
        let store = try await openStore(configuration, logger: logger)
        let collector = GarbageCollector(
            coordinator: BuildCoordinator(store: store, logger: logger),
            paths: WorkerPaths(dataDirectory: configuration.storage.dataDirectory, logs: configuration.storage.logsDirectory),
            retention: configuration.storage.retention, logger: logger)
        return try await collector.collect(now: Date())
    }

    /// Builds the services of `kiln serve`: the HTTP server, the build worker and the status reporter.
    ///
    /// - Parameters:
    ///   - onListening: called with the bound port once the server accepts connections.
    ///   - executor: replaces nix (tests of the server that do not exercise nix).
    public static func make(
        _ configuration: KilnConfiguration, logger: Logger,
        executor: (any Executor)? = nil,
        onListening: @escaping @Sendable (Int) async -> Void = { _ in }
    ) async throws -> ServiceGroup {
        let dataDirectory = configuration.storage.dataDirectory
        do {
            try FileManager.default.createDirectory(atPath: dataDirectory, withIntermediateDirectories: true)
        } catch {
            throw StoreError.unavailable(path: dataDirectory, reason: "cannot create storage.data-dir: \(error.localizedDescription)")
        }
        // Before anything in the directory is touched.
        let lock = try DataDirectoryLock(dataDirectory: dataDirectory)
        do {
            return try await assemble(configuration, lock: lock, logger: logger, executor: executor, onListening: onListening)
        } catch {
            lock.release()
            throw error
        }
    }

    private static func assemble(
        _ configuration: KilnConfiguration, lock: DataDirectoryLock, logger: Logger, executor: (any Executor)?,
        onListening: @escaping @Sendable (Int) async -> Void
    ) async throws -> ServiceGroup {
        let dataDirectory = configuration.storage.dataDirectory
        let store = try await openStore(configuration, logger: logger)
        // The build service's synthetic repository comes last.
        let ids = try await store.syncRepositories(
            configuration.repositories.map { ($0.forge, $0.name) } + [(BuildService.forge, BuildService.repositoryName)])

        var forges: [String: any Forge] = [:]
        var gitCredentials: [String: GitCredentials] = [:]
        for forge in configuration.forges {
            let (adapter, credentials) = makeForge(forge)
            forges[forge.name] = adapter
            gitCredentials[forge.name] = credentials
        }
        var endpoints: [String: ForgeEndpoint] = [:]
        var repositoryConfigs: [RepositoryID: KilnCore.Repository] = [:]
        for (configured, id) in zip(configuration.repositories, ids) {
            guard let forge = configuration.forges.first(where: { $0.name == configured.forge }) else { continue }
            // One value per repository, for intake, the planner and the worker alike.
            let repository = KilnCore.Repository(
                id: id, name: configured.name, cloneURL: configured.cloneURL, credentials: gitCredentials[forge.name] ?? .none,
                pullRequestFetch: forge.pullRequestFetch, forks: configured.forks,
                pullRequests: configured.pullRequests)
            endpoints[configured.forge, default: ForgeEndpoint(forge: forges[configured.forge]!, repositories: [:])]
                .repositories[configured.name.lowercased()] = repository
            repositoryConfigs[id] = repository
        }
        let buildServiceSource = BuildServiceRepository(path: dataDirectory + "/build-service.git")
        let buildServiceID = ids[ids.count - 1]
        repositoryConfigs[buildServiceID] = KilnCore.Repository(
            id: buildServiceID, name: BuildService.repositoryName, cloneURL: buildServiceSource.url)
        for forge in configuration.forges where endpoints[forge.name] == nil {
            endpoints[forge.name] = ForgeEndpoint(forge: forges[forge.name]!, repositories: [:])
        }

        // Each server has its own registry: no process-wide metrics system to bootstrap.
        let registry = PrometheusCollectorRegistry()
        var factory = PrometheusMetricsFactory(registry: registry)
        factory.defaultDurationHistogramBuckets = KilnMetrics.durationBuckets
        factory.valueHistogramBuckets["kiln_output_bytes"] = KilnMetrics.byteBuckets
        let metrics = KilnMetrics(
            factory: factory, forgeTypes: Dictionary(uniqueKeysWithValues: configuration.forges.map { ($0.name, $0.type.rawValue) }))
        let coordinator = BuildCoordinator(store: store, metrics: metrics, logger: logger)
        let health = HealthState()
        let progress = ProgressBoard()
        let paths = WorkerPaths(dataDirectory: dataDirectory, logs: configuration.storage.logsDirectory)
        var nixSettings = configuration.nix.settings
        // Private nix homes live beside the work trees, and go with them at start-up.
        nixSettings.scratchDirectory = nixSettings.scratchDirectory ?? paths.workspaces
        nixSettings.daemonDirectory = nixSettings.daemonDirectory ?? dataDirectory + "/nix-daemons"
        nixSettings.processMark = nixSettings.processMark ?? dataDirectory
        let intake = WebhookIntake(endpoints: endpoints, coordinator: coordinator, logger: logger)
        var workerSettings = WorkerSettings(
            limits: configuration.nix.limits, maxParallelJobs: configuration.nix.maxParallelJobs,
            logCapBytes: configuration.storage.maxLogBytes, paths: paths)
        workerSettings.evaluationTimeout = nixSettings.evalTimeout
        workerSettings.registries = configuration.registries
        workerSettings.sharedDatabase = configuration.storage.database != nil
        let adHocSecrets = workerSettings.adHocSecrets
        let nixExecutor = NixExecutor(settings: nixSettings)
        // The warm-up's private nix home is not a work tree's: the worker's start-up clears those.
        var keeperSettings = nixSettings
        keeperSettings.scratchDirectory = dataDirectory + "/store-keeper"
        let keeper = StoreKeeper(
            coordinator: coordinator, maintenance: (executor as? any StoreMaintenance) ?? NixExecutor(settings: keeperSettings),
            repositories: configuration.repositories.map { ($0.forge, $0.name) }, settings: storeKeeperSettings(configuration),
            logger: logger)
        // One mirror set: its calls for one repository are serialised.
        let mirrors = GitMirrors(root: dataDirectory + "/mirrors")
        let worker = BuildWorker(
            coordinator: coordinator, source: mirrors,
            executor: executor ?? nixExecutor, repositories: repositoryConfigs,
            settings: workerSettings, health: health, progress: progress, logger: logger)
        let reporter = StatusReporter(
            coordinator: coordinator, forges: forges,
            recordOnly: Set(configuration.forges.filter { $0.statusAPI == .none }.map(\.name) + [BuildService.forge]),
            publicURL: configuration.server.publicURL, logger: logger)
        var dependencies =
            HTTPDependencies(
                intake: intake, coordinator: coordinator,
                adminToken: configuration.server.adminToken, health: health, progress: progress, databaseWritable: { await store.isWritable() }, paths: paths,
                maxBodyBytes: configuration.server.maxBodyBytes, maxConcurrentWebhooks: configuration.server.maxConcurrentWebhooks,
                maxEventStreams: configuration.server.maxEventStreams,
                publicURL: configuration.server.publicURL, metricsRegistry: registry, workerSlots: configuration.nix.maxParallelJobs,
                tokens: store, isPrivate: configuration.server.isPrivate)
        dependencies.cache = keeper
        dependencies.adHoc = BuildService(
            coordinator: coordinator, repository: buildServiceSource, repositoryID: buildServiceID, settings: configuration.buildService,
            limits: configuration.nix.limits, nix: nixExecutor, secrets: adHocSecrets)
        dependencies.igluSlots = configuration.buildService.igluSlots
        let router = buildRouter(dependencies)
        // HTTP/1 with WebSocket upgrades: the Iglu Builder socket.
        let webSocketRouter = buildWebSocketRouter(dependencies) ?? Router(context: BasicWebSocketRequestContext.self)
        let application = Application(
            router: router,
            // Each connection on its event loop; the routes that may block move to the task pool.
            server: .onEventLoops { [webSocketResponder = webSocketRouter.buildResponder()] in
                HTTP1WebSocketUpgradeChannel(responder: $0, webSocketResponder: webSocketResponder, configuration: .init())
            },
            configuration: .init(address: .hostname(configuration.server.host, port: configuration.server.port), serverName: "kiln"),
            onServerRunning: { channel in
                let port = channel.localAddress?.port ?? configuration.server.port
                logger.info("listening", metadata: ["address": "\(configuration.server.host):\(port)"])
                await onListening(port)
            },
            logger: logger)
        let collector = GarbageCollector(
            coordinator: coordinator, paths: paths, retention: configuration.storage.retention, logger: logger)
        var services: [ServiceGroupConfiguration.ServiceConfiguration] = [
            .init(service: lock), .init(service: reporter), .init(service: collector), .init(service: worker), .init(service: application),
            .init(service: keeper),
        ]
        if configuration.storage.database != nil {
            services.append(.init(service: WorkAnnouncements(store: store, bells: coordinator.bells)))
        }
        if let interval = configuration.reconcileInterval {
            services.append(.init(service: Reconciler(
                coordinator: coordinator, endpoints: endpoints.filter { !$0.value.repositories.isEmpty }, source: mirrors,
                interval: interval, logger: logger)))
        }
        if let socket = configuration.server.eventsSocket {
            try EventsSocketFile.prepare(socket)
            services.append(.init(service: Application(
                router: buildEventsSocketRouter(coordinator.store, streams: dependencies.eventStreams),
                configuration: .init(address: .unixDomainSocket(path: socket), serverName: "kiln"),
                onServerRunning: { _ in
                    // Readable and writable by Kiln's user and group only.
                    chmod(socket, 0o660)
                    logger.info("serving post-build events", metadata: ["socket": "\(socket)"])
                },
                logger: logger)))
            services.append(.init(service: EventsSocketFile(path: socket)))
        }
        // Last: told of a shutdown first, it ends the event streams before the servers stop.
        services.append(.init(service: dependencies.eventStreams))
        var group = ServiceGroupConfiguration(services: services, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
        // Past this, what has not stopped is cancelled: an event stream whose client stopped
        // reading would otherwise hold the shutdown.
        group.maximumGracefulShutdownDuration = .seconds(60)
        return ServiceGroup(configuration: group)
    }
}

/// Wakes this instance's loops when another instance on the same PostgreSQL database has new
/// work or news (`LISTEN`), instead of their waiting for their next look.
struct WorkAnnouncements: Service {
    let store: SQLStore
    let bells: Doorbells

    func run() async throws {
        await cancelWhenGracefulShutdown {
            await store.listenForWork { [bells] in
                bells.planning.ring()
                bells.jobs.ring()
                bells.statuses.ring()
                bells.events.ring()
            }
        }
    }
}
