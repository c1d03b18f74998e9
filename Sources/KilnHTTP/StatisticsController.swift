import Foundation
import Hummingbird
import KilnCore
import KilnPipeline

/// `GET /api/v1/statistics`: success rate, build time, artifact size, cache hit rate, queue and
/// worker utilisation over a window, for one repository, one service, or everything.
struct StatisticsController: Sendable {
    let store: any BuildQueries
    let workerSlots: Int

    var endpoints: RouteCollection<BasicRequestContext> {
        let routes = RouteCollection(context: BasicRequestContext.self)
        routes.get("/api/v1/statistics") { request, _ in try await statistics(request) }
        return routes
    }

    private func statistics(_ request: Request) async throws -> Response {
        let parameters = request.uri.queryParameters
        let window: Duration
        switch CacheController.window(request) {
        case .failure(let bad): return try JSONBody.error(.badRequest, bad.message)
        case .success(let value): window = value
        }
        let repository = parameters.get("repository")
        let service = parameters.get("service")
        if repository != nil, service != nil {
            return try JSONBody.error(.badRequest, "give repository or service, not both")
        }
        if let repository, repository.isEmpty || repository.count > 200 {
            return try JSONBody.error(.badRequest, "repository must be a configured repository's name, such as owner/name")
        }
        let now = Date()
        let seconds = Double(window.components.seconds)
        let figures = try await store.buildStatistics(repository: repository, service: service, since: now.addingTimeInterval(-seconds))
        let queue = try await store.queueStats()
        let slots = max(1, workerSlots)
        return try JSONBody.response(
            .ok,
            StatisticsJSON(
                window_seconds: window.components.seconds, repository: repository, service: service,
                builds: Dictionary(uniqueKeysWithValues: figures.builds.map { ($0.key.rawValue, $0.value) }),
                success_rate: figures.successRate, average_build_seconds: figures.averageBuildSeconds,
                average_artifact_bytes: figures.averageOutputBytes, artifacts: figures.outputs,
                cache_hit_rate: figures.activity.hitRate,
                queue: .init(builds: queue.queuedBuilds, jobs: queue.queuedJobs),
                worker_utilisation: .init(
                    now: Double(queue.runningJobs) / Double(slots), window: figures.jobSeconds / (seconds * Double(slots)), slots: slots)))
    }
}

struct StatisticsJSON: Encodable {
    struct Queue: Encodable {
        var builds: Int
        var jobs: Int
    }
    struct Utilisation: Encodable {
        var now: Double
        var window: Double
        var slots: Int
    }

    var window_seconds: Int64
    var repository: String?
    var service: String?
    var builds: [String: Int]
    var success_rate: Double?
    var average_build_seconds: Double?
    var average_artifact_bytes: Double?
    var artifacts: Int
    var cache_hit_rate: Double?
    var queue: Queue
    var worker_utilisation: Utilisation
}
