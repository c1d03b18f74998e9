import Foundation
import Logging

/// Ends work that nothing else will end, so that every pending status reaches a final state:
/// a job still recorded as running well past its timeout (its end could not be written, or the
/// task running it is stuck), a build planning for longer than any fetch may take. Each ends
/// errored, with its final statuses.
public struct Watchdog: Sendable {
    private let coordinator: BuildCoordinator
    private let logger: Logger
    /// Past a job's own timeout, how long before it counts as lost: Kiln stops a job at its
    /// timeout and kills it after the grace period, so a job still running here is stuck.
    public var jobGrace: TimeInterval = 900
    /// Longest a build may stay planning (fetching and reading the pipeline file).
    public var planningLimit: TimeInterval = 3600

    /// Creates a watchdog that ends work through `coordinator`.
    public init(coordinator: BuildCoordinator, logger: Logger) {
        self.coordinator = coordinator
        self.logger = logger
    }

    /// Ends what is overdue at `now`; returns how many jobs and builds it ended.
    @discardableResult
    public func sweep(now: Date) async -> (jobs: Int, builds: Int) {
        let overdue: (jobs: [JobID], builds: [BuildID])
        do {
            overdue = try await coordinator.store.overdue(at: now, jobGrace: jobGrace, planningLimit: planningLimit)
        } catch {
            logger.error("the watchdog could not read the database: \(error)")
            return (0, 0)
        }
        var ended = (jobs: 0, builds: 0)
        for job in overdue.jobs {
            let report = JobReport(
                outcome: .errored("Kiln lost track of this job: it was still recorded as running \(Int(jobGrace / 60)) min past its timeout; run the build again"),
                duration: .zero)
            do {
                try await coordinator.finishJob(job, report, details: nil)
                ended.jobs += 1
                logger.error("the watchdog ended a job that was past its deadline", metadata: ["job.id": "\(job)"])
            } catch {
                logger.error("the watchdog could not end a job", metadata: ["job.id": "\(job)", "error": "\(error)"])
            }
        }
        for build in overdue.builds {
            do {
                try await coordinator.finishPlanning(
                    build, .errored("planning took longer than \(Int(planningLimit / 60)) min; push again to retry"), resolution: nil)
                ended.builds += 1
                logger.error("the watchdog ended a build whose planning hung", metadata: ["build.id": "\(build)"])
            } catch {
                logger.error("the watchdog could not end a build", metadata: ["build.id": "\(build)", "error": "\(error)"])
            }
        }
        return ended
    }
}
