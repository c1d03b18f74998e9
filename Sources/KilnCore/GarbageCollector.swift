import Foundation
import Logging
import ServiceLifecycle

/// Removes builds, and their logs, that ended longer ago than the retention period, and prunes
/// the event log (events older than the retention, and all but the newest `eventsKept`).
public struct GarbageCollector: Service {
    /// Events the log keeps at most.
    public static let eventsKept = 100_000
    private let coordinator: BuildCoordinator
    private let paths: WorkerPaths
    private let retention: Duration
    private let interval: Duration
    private let logger: Logger

    /// A collector that runs at start and then every `interval`.
    public init(
        coordinator: BuildCoordinator, paths: WorkerPaths, retention: Duration, interval: Duration = .seconds(86400), logger: Logger
    ) {
        self.coordinator = coordinator
        self.paths = paths
        self.retention = retention
        self.interval = interval
        self.logger = logger
    }

    public func run() async throws {
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                do {
                    let removed = try await collect(now: Date())
                    if removed.builds > 0 {
                        logger.info("removed old builds", metadata: ["builds": "\(removed.builds)", "jobs": "\(removed.jobs)"])
                    }
                } catch {
                    logger.error("garbage collection failed: \(error)")
                }
                try? await Task.sleep(for: interval)
            }
        }
    }

    /// Removes what ended before `now` minus the retention; returns how many builds and jobs went.
    public func collect(now: Date) async throws -> (builds: Int, jobs: Int) {
        let seconds = Double(retention.components.seconds)
        let removed = try await coordinator.removeOld(endedBefore: now.addingTimeInterval(-seconds), eventsKept: Self.eventsKept)
        let logs = JobLogs(paths)
        for job in removed.jobs { logs.remove(job) }
        return (removed.builds, removed.jobs.count)
    }
}
