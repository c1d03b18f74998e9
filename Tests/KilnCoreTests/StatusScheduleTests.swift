import Foundation
import Testing

@testable import KilnCore

/// A status that cannot be delivered is given up 24 hours after it was made, on schedule.
@Suite struct StatusScheduleTests {
    static let created = Date(timeIntervalSince1970: 1_800_000_000)

    @Test func backoffDoublesUpToFiveMinutes() {
        #expect((1...12).map { StatusReporter.backoff(afterAttempts: $0) }
            == [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300].map { .seconds($0) })
    }

    @Test func aLongRetryAfterNeverCarriesAnAttemptPastTheGiveUpTime() {
        let deadline = Self.created.addingTimeInterval(StatusReporter.giveUpAfter)
        let now = deadline.addingTimeInterval(-10)
        #expect(StatusReporter.nextAttempt(created: Self.created, attempts: 40, retryAfter: .seconds(3600), now: now) == deadline)
        // At the give-up time, the failed last attempt gives up.
        #expect(StatusReporter.nextAttempt(created: Self.created, attempts: 41, retryAfter: nil, now: deadline) == nil)
    }

    @Test func theForgesRetryAfterWinsWhenLonger() {
        let now = Self.created.addingTimeInterval(5)
        #expect(StatusReporter.nextAttempt(created: Self.created, attempts: 1, retryAfter: .seconds(30), now: now) == now.addingTimeInterval(30))
        #expect(StatusReporter.nextAttempt(created: Self.created, attempts: 3, retryAfter: .seconds(1), now: now) == now.addingTimeInterval(4))
    }
}
