import AsyncHTTPClient
import Crypto
import Foundation
import KilnApp
import KilnCore
import KilnTesting
import Logging
import ServiceLifecycle
import Synchronization
import KilnPipeline

/// Events delivered to many connected `/api/v1/events` clients during a burst of builds, and
/// the delay from a build's commit (its 202) to its event at a client.
enum EventLoad {
    static func run(clients: Int, builds: Int) async throws {
        let directory = try TemporaryDirectory("kiln-bench-events")
        defer { directory.remove() }
        let kiln = try await Serving.start(in: directory)
        let url = "http://127.0.0.1:\(kiln.port)"

        var settings = HTTPClient.Configuration()
        settings.connectionPool.concurrentHTTP1ConnectionsPerHostSoftLimit = clients + 16
        let client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: settings)
        let streams = (0..<clients).map { _ in EventClient("\(url)/api/v1/events?types=build.queued", client: client) }
        while streams.contains(where: { $0.comments == 0 }) { try await Task.sleep(for: .milliseconds(20)) }

        // The pushes, 8 at a time; each one's 202 time by build id.
        let accepted = AcceptTimes()
        let started = ContinuousClock.now
        try await withThrowingTaskGroup(of: Void.self) { group in
            for sender in 0..<8 {
                group.addTask {
                    for index in stride(from: sender, to: builds, by: 8) {
                        let body = IntakeLoad.body
                        let answer = try await HTTPTestClient.send(
                            "POST", "\(url)/webhooks/github",
                            headers: WebhookSigner.githubHeaders(
                                event: "push", body: body, secret: IntakeLoad.secret, delivery: "events-\(index)"),
                            body: body)
                        guard answer.status == 202, let id = answer.json["build_id"] as? Int else { fatalError("push: \(answer.status)") }
                        accepted.record(Int64(id), .now)
                    }
                }
            }
            try await group.waitForAll()
        }
        while streams.contains(where: { $0.events.count < builds }) {
            if ContinuousClock.now - started > .seconds(120) { fatalError("events did not all arrive") }
            try await Task.sleep(for: .milliseconds(10))
        }
        let elapsed = ContinuousClock.now - started
        let delays = streams[0].events.compactMap { event -> Double? in
            guard let id = (event.json["build_id"] as? NSNumber)?.int64Value, let at = accepted.time(id) else { return nil }
            return milliseconds(event.at - at)
        }
        for stream in streams { stream.close() }
        try await client.shutdown()
        await kiln.stop()

        let delivered = Double(clients * builds) / (Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18)
        let sorted = delays.sorted()
        let p99 = sorted.isEmpty ? 0 : sorted[min(sorted.count - 1, Int(Double(sorted.count) * 0.99))]
        print("[events] \(clients) clients on /api/v1/events, \(builds) signed pushes (8 senders): \(clients * builds) events in \(HumanDuration.format(elapsed))")
        print(String(format: "[events]   delivered: %.0f events/s", delivered))
        print(String(format: "[events]   202 → event at a client: median %.1f ms, p99 %.1f ms (n=%d)", median(delays), p99, delays.count))
    }

    /// When each build's delivery was answered.
    final class AcceptTimes: Sendable {
        private let times = Mutex<[Int64: ContinuousClock.Instant]>([:])
        func record(_ id: Int64, _ at: ContinuousClock.Instant) { times.withLock { $0[id] = at } }
        func time(_ id: Int64) -> ContinuousClock.Instant? { times.withLock { $0[id] } }
    }
}
