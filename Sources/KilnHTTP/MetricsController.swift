import Foundation
import Hummingbird
import KilnCore
import NIOCore
import Prometheus

/// `GET /metrics`: Prometheus' text format. Counters and histograms move as things happen; the
/// queue's gauges are read from the database when scraped.
struct MetricsController: Sendable {
    /// Where the metrics are kept.
    let registry: PrometheusCollectorRegistry
    /// Sets the gauges.
    let metrics: KilnMetrics
    /// The queue's figures.
    let store: any BuildQueries
    /// Open event streams.
    let streams: EventStreams
    /// Jobs the worker runs at once.
    let workerSlots: Int

    /// Its routes.
    var endpoints: RouteCollection<BasicRequestContext> {
        let routes = RouteCollection(context: BasicRequestContext.self)
        routes.get("/metrics") { _, _ in try await scrape() }
        return routes
    }

    private func scrape() async throws -> Response {
        let stats = try await store.queueStats()
        let now = Date()
        func age(_ date: Date?) -> Double { date.map { max(0, now.timeIntervalSince($0)) } ?? 0 }
        metrics.gauge("kiln_queue_length", Double(stats.queuedBuilds), [("kind", "builds")])
        metrics.gauge("kiln_queue_length", Double(stats.queuedJobs), [("kind", "jobs")])
        metrics.gauge("kiln_queue_oldest_seconds", age(stats.oldestQueuedBuild), [("kind", "builds")])
        metrics.gauge("kiln_queue_oldest_seconds", age(stats.oldestQueuedJob), [("kind", "jobs")])
        metrics.gauge("kiln_jobs_running", Double(stats.runningJobs))
        metrics.gauge("kiln_worker_slots", Double(workerSlots))
        metrics.gauge("kiln_status_outbox_depth", Double(stats.pendingStatuses))
        metrics.gauge("kiln_event_clients", Double(streams.openCount))
        return Response(
            status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
            body: .init(byteBuffer: ByteBuffer(bytes: registry.emitToBuffer())))
    }
}
