import Foundation
import Logging
import ServiceLifecycle

/// Posts the outbox's statuses to the forges, in order, retrying what can be retried.
///
/// A status is enqueued in the same transaction as the change it reports, so it survives
/// restarts; this service only delivers. Transient failures back off exponentially (the
/// forge's `Retry-After` wins when longer); refusals are logged with the forge's answer and dropped.
public struct StatusReporter: Service {
    private let coordinator: BuildCoordinator
    private let forges: [String: any Forge]
    private let recordOnly: Set<String>
    private let publicURL: String
    private let bell: Doorbell
    private let logger: Logger

    /// First retry delay; doubled per attempt up to `maxBackoff`.
    static let initialBackoff: Duration = .seconds(1)
    /// Longest delay between attempts.
    static let maxBackoff: Duration = .seconds(300)
    /// After this long a status that still cannot be delivered is dropped.
    static let giveUpAfter: TimeInterval = 24 * 3600

    /// Creates the reporter. Forges in `recordOnly` (`status-api: none`) are never called:
    /// their statuses are marked recorded and shown on the build page.
    public init(
        coordinator: BuildCoordinator, forges: [String: any Forge], recordOnly: Set<String>, publicURL: String, logger: Logger
    ) {
        self.coordinator = coordinator
        self.forges = forges
        self.recordOnly = recordOnly
        self.publicURL = publicURL.hasSuffix("/") ? String(publicURL.dropLast()) : publicURL
        self.bell = coordinator.bells.statuses
        self.logger = logger
    }

    public func run() async throws {
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                let seen = bell.generation
                let batch: (due: [OutboxEntry], nextDue: Date?)
                do {
                    batch = try await coordinator.store.dueStatuses(at: Date(), limit: 32)
                } catch {
                    logger.error("could not read the status outbox: \(error)")
                    await bell.wait(after: seen, upTo: .seconds(5))
                    continue
                }
                if batch.due.isEmpty {
                    let untilNext = batch.nextDue.map { max(0.05, $0.timeIntervalSinceNow) } ?? 30
                    await bell.wait(after: seen, upTo: .milliseconds(Int64(min(untilNext, 30) * 1000)))
                    continue
                }
                // The store keeps at most one pending entry per commit and context, and a batch
                // is finished before the next is read, so statuses of one context never overtake.
                await withDiscardingTaskGroup { group in
                    for entry in batch.due {
                        group.addTask { await self.deliver(entry) }
                    }
                }
            }
        }
    }

    private func deliver(_ entry: OutboxEntry) async {
        let metadata: Logger.Metadata = [
            "build.id": "\(entry.buildID)", "status.context": "\(entry.status.context)",
            "status.state": "\(entry.status.state.rawValue)", "forge": "\(entry.forge)",
        ]
        let result: StatusDeliveryResult
        if recordOnly.contains(entry.forge) {
            result = .recorded
        } else if let forge = forges[entry.forge] {
            let status = CommitStatus(
                context: entry.status.context, state: entry.status.state, description: entry.status.description,
                targetURL: "\(publicURL)/builds/\(entry.buildID)", details: entry.status.details)
            do throws(ForgeAPIError) {
                try await forge.post(status, on: entry.commit)
                result = .delivered
            } catch {
                switch error {
                case .rejected(let code, let body):
                    logger.warning(
                        "forge refused a status; dropping it",
                        metadata: metadata.merging(["http.status": "\(code)", "forge.answer": "\(body.prefix(500))"]) { $1 })
                    result = .dropped(error: "HTTP \(code): \(body.prefix(500))")
                case .transient(let detail, let retryAfter):
                    result = retry(entry, detail, retryAfter, metadata)
                }
            }
        } else {
            result = .dropped(error: "forge '\(entry.forge)' is no longer configured")
        }
        do {
            try await coordinator.recordStatusDelivery(entry, result)
        } catch {
            logger.error("could not record a status delivery; it will be posted again", metadata: metadata)
        }
    }

    private func retry(_ entry: OutboxEntry, _ detail: String, _ retryAfter: Duration?, _ metadata: Logger.Metadata)
        -> StatusDeliveryResult
    {
        guard let next = Self.nextAttempt(created: entry.createdAt, attempts: entry.attempts + 1, retryAfter: retryAfter, now: Date())
        else {
            logger.error("giving up on a status after \(entry.attempts + 1) attempts", metadata: metadata)
            return .dropped(error: "gave up after \(entry.attempts + 1) attempts in 24 hours; the forge's last answer: \(detail)")
        }
        logger.notice(
            "status post failed; retrying",
            metadata: metadata.merging(["error": "\(detail)", "retry.at": "\(next.timeIntervalSince1970)"]) { $1 })
        return .retry(at: next, error: detail)
    }

    /// When to try a status again after `attempts` failed ones, or nil to give up. The backoff
    /// (or the forge's longer `Retry-After`) never carries an attempt past the give-up time, so
    /// the last attempt, and the giving up, happen on schedule 24 hours after the status was made.
    static func nextAttempt(created: Date, attempts: Int, retryAfter: Duration?, now: Date) -> Date? {
        let deadline = created.addingTimeInterval(giveUpAfter)
        guard now < deadline else { return nil }
        let delay = max(backoff(afterAttempts: attempts), retryAfter ?? .zero)
        let seconds = Double(delay.components.seconds) + Double(delay.components.attoseconds) / 1e18
        return min(now.addingTimeInterval(seconds), deadline)
    }

    /// The delay before attempt `attempts + 1`: 1 s, 2 s, 4 s, … up to five minutes.
    static func backoff(afterAttempts attempts: Int) -> Duration {
        let exponent = min(max(attempts - 1, 0), 16)
        return min(initialBackoff * (1 << exponent), maxBackoff)
    }
}
