import Foundation
import Hummingbird
import HummingbirdWebSocket
import KilnCore
import NIOCore

/// Kiln's routes (DESIGN.md §7): each controller brings its own endpoints and only the parts it
/// uses. Errors become HTTP statuses in the controllers and nowhere else.
public func buildRouter(_ dependencies: HTTPDependencies) -> Router<BasicRequestContext> {
    let router = Router()
    let store = dependencies.store
    let access = Access(
        adminToken: dependencies.adminToken, tokens: dependencies.tokens, sessions: Sessions(secure: dependencies.publicURL.hasPrefix("https://")))
    router.add(middleware: BlockingRoutesOffEventLoops())
    if dependencies.isPrivate { router.add(middleware: PrivateMiddleware(access: access)) }
    router.addRoutes(
        WebhookController(
            intake: dependencies.intake, slots: dependencies.webhookSlots, maxBodyBytes: dependencies.maxBodyBytes,
            publicURL: dependencies.publicURL
        ).endpoints)
    router.addRoutes(
        HealthController(
            health: dependencies.health, databaseWritable: dependencies.databaseWritable,
            instance: dependencies.coordinator.store.lease.owner
        ).endpoints)
    router.addRoutes(
        BuildsController(store: store, progress: dependencies.progress, logs: dependencies.logs, publicURL: dependencies.publicURL)
            .endpoints)
    router.addRoutes(
        JobsController(
            store: store, progress: dependencies.progress, logs: dependencies.logs, publicURL: dependencies.publicURL,
            streams: dependencies.eventStreams
        ).endpoints)
    router.addRoutes(EventsController(log: dependencies.coordinator.store, streams: dependencies.eventStreams).endpoints)
    router.addRoutes(
        ControlController(
            coordinator: dependencies.coordinator, access: access, publicURL: dependencies.publicURL
        ).endpoints)
    router.addRoutes(BadgeController(store: store).endpoints)
    router.addRoutes(NixbuildController(store: store, host: .current).endpoints)
    router.addRoutes(StatisticsController(store: store, workerSlots: dependencies.workerSlots).endpoints)
    router.addRoutes(
        PagesController(
            store: store, events: dependencies.coordinator.store, progress: dependencies.progress, logs: dependencies.logs,
            access: access, coordinator: dependencies.coordinator, publicURL: dependencies.publicURL
        ).endpoints)
    if let adHoc = dependencies.adHoc {
        router.addRoutes(
            AdHocController(builds: adHoc, access: access, publicURL: dependencies.publicURL, maxBodyBytes: dependencies.maxBodyBytes)
                .endpoints)
    }
    if let keeper = dependencies.cache {
        router.addRoutes(CacheController(keeper: keeper, access: access).endpoints)
    }
    if let registry = dependencies.metricsRegistry {
        router.addRoutes(
            MetricsController(
                registry: registry, metrics: dependencies.coordinator.metrics, store: store, streams: dependencies.eventStreams,
                workerSlots: dependencies.workerSlots
            ).endpoints)
    }
    return router
}

/// The events socket's one route: `GET /events`, post-build events as Determinate Nixd serves them.
public func buildEventsSocketRouter(_ log: any EventLog, streams: EventStreams) -> Router<BasicRequestContext> {
    let router = Router()
    router.get("/events") { _, _ in try EventStream.postBuild(log, streams: streams) }
    return router
}

/// `GET /api/v1/events`: the event stream (server-sent events).
struct EventsController: Sendable {
    /// The durable event log.
    let log: any EventLog
    /// Open streams: their doorbell, limit and shutdown.
    let streams: EventStreams

    /// Its routes.
    var endpoints: RouteCollection<BasicRequestContext> {
        let routes = RouteCollection(context: BasicRequestContext.self)
        routes.get("/api/v1/events") { request, _ in try EventStream.api(request, log, streams: streams) }
        return routes
    }
}

/// JSON answers.
enum JSONBody {
    static let encoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
        encoder.dateEncodingStrategy = .iso8601
        return encoder
    }()

    static func response(_ status: HTTPResponse.Status, _ value: some Encodable) throws -> Response {
        var data = try encoder.encode(value)
        data.append(0x0A)
        return Response(
            status: status, headers: [.contentType: "application/json; charset=utf-8"],
            body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }

    static func error(_ status: HTTPResponse.Status, _ message: String) throws -> Response {
        try response(status, ["error": message])
    }
}

/// The WebSocket routes: the Iglu Builder socket, `/api/v1/build`, for `control` tokens; nil
/// when the server has no build service.
public func buildWebSocketRouter(_ dependencies: HTTPDependencies) -> Router<BasicWebSocketRequestContext>? {
    guard let adHoc = dependencies.adHoc else { return nil }
    let access = Access(
        adminToken: dependencies.adminToken, tokens: dependencies.tokens, sessions: Sessions(secure: dependencies.publicURL.hasPrefix("https://")))
    let socket = IgluSocket(
        builds: adHoc, store: dependencies.store, logs: dependencies.logs, slots: Slots(dependencies.igluSlots))
    let router = Router(context: BasicWebSocketRequestContext.self)
    router.ws("/api/v1/build") { request, _ in
        guard let scope = await access.scope(request), scope >= .control else { return .dontUpgrade }
        return .upgrade([:])
    } onUpgrade: { inbound, outbound, _ in
        // Off the event loop, as every route but the webhooks' (BlockingRoutesOffEventLoops).
        try await withTaskExecutorPreference(globalConcurrentExecutor) { try await socket.handle(inbound, outbound) }
    }
    return router
}
