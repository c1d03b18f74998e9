import Testing

@testable import KilnCore

@Suite struct RunningJobsTests {
    /// A job is claimed in the store before it registers; a cancel in between still stops it.
    @Test func aStopBeforeTheJobRegistersFiresWhenItDoes() {
        let running = RunningJobs()
        running.stop([7], .requested)
        #expect(running.start(7).reason == .requested)
        // Only once: the next run of the same job starts clean.
        running.end(7)
        #expect(running.start(7).reason == nil)
    }

    @Test func aStopReachesARunningJobAtOnce() {
        let running = RunningJobs()
        let signal = running.start(3)
        running.stop([3], .superseded(by: "abc"))
        #expect(signal.reason == .superseded(by: "abc"))
        #expect(running.start(4).reason == nil)
    }
}
