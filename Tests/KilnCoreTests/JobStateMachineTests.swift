import Foundation
import KilnPipeline
import Testing

@testable import KilnCore

@Suite struct JobStateMachineTests {
    typealias Machine = JobStateMachine

    static let succeeded = JobReport(outcome: .succeeded, exitCode: 0, outputs: [BuiltOutput(name: "out", path: "/nix/store/a"), BuiltOutput(name: "out", path: "/nix/store/b")], duration: .seconds(41))
    static let failed = JobReport(outcome: .failed(exitCode: 100, reason: "builder failed"), exitCode: 100, duration: .seconds(3))

    /// (state before, input, action, state after)
    static let table: [(JobState, Machine.Input, Machine.Action, JobState)] = [
        (.queued, .start, .run, .running),
        (.running, .finish(succeeded), .report(.succeeded, description: "built 2 outputs in 41 s"), .succeeded),
        (.running, .finish(failed), .report(.failed, description: "failed after 3 s (nix exit 100): builder failed"), .failed),
        (.running, .finish(JobReport(outcome: .timedOut(after: .seconds(1200), silent: false), duration: .seconds(1200))),
            .report(.failed, description: "timed out after 20m"), .timedOut),
        (.running, .finish(JobReport(outcome: .timedOut(after: .seconds(300), silent: true), duration: .seconds(310))),
            .report(.failed, description: "no output for 5m; stopped"), .timedOut),
        (.running, .finish(JobReport(outcome: .cancelled(.superseded(by: "abcdef1234")), duration: .seconds(1))),
            .report(.cancelled, description: "superseded by abcdef1"), .cancelled),
        (.running, .finish(JobReport(outcome: .errored("nix vanished"), duration: .zero)),
            .report(.errored, description: "Kiln error: nix vanished"), .errored),
        (.queued, .dependencyDidNotSucceed(name: "hello", state: .failed),
            .report(.cancelled, description: "skipped: needs 'hello', which failed"), .skipped),
        (.queued, .cancel(.requested), .report(.cancelled, description: "cancelled"), .cancelled),
        (.running, .cancel(.requested), .stop(.requested), .running),
        (.running, .requeue, .none, .queued),
        // Inputs that arrive after the job ended change nothing.
        (.errored, .finish(succeeded), .none, .errored),
        (.failed, .cancel(.requested), .none, .failed),
        (.succeeded, .dependencyDidNotSucceed(name: "x", state: .failed), .none, .succeeded),
    ]

    /// Inputs that cannot happen stop the process instead of passing silently.
    @Test func impossibleInputsAreProgrammingErrors() async {
        await #expect(processExitsWith: .failure) {
            var machine = JobStateMachine(state: .queued)
            _ = machine.apply(.finish(JobReport(outcome: .succeeded, duration: .zero)))
        }
        await #expect(processExitsWith: .failure) {
            var machine = JobStateMachine(state: .running)
            _ = machine.apply(.start)
        }
        await #expect(processExitsWith: .failure) {
            var machine = JobStateMachine(state: .queued)
            _ = machine.apply(.requeue)
        }
    }

    @Test func allowedFailureSaysSoFirst() {
        var machine = Machine(state: .running, allowFailure: true)
        #expect(machine.apply(.finish(Self.failed)) == .report(.failed, description: "allowed to fail: failed after 3 s (nix exit 100): builder failed"))
        var succeeding = Machine(state: .running, allowFailure: true)
        #expect(succeeding.apply(.finish(Self.succeeded)) == .report(.succeeded, description: "built 2 outputs in 41 s"))
    }

    @Test(arguments: table)
    func transition(before: JobState, input: Machine.Input, action: Machine.Action, after: JobState) {
        var machine = Machine(state: before)
        #expect(machine.apply(input) == action)
        #expect(machine.state == after)
    }
}

@Suite struct BuildProgressTests {
    let now = Date(timeIntervalSince1970: 1_000_000)

    func job(_ id: JobID, _ name: String, needs: [String] = [], state: JobState = .queued) -> JobRecord {
        JobRecord(
            id: id, buildID: 1, name: name, target: .installables([".#\(name)"]), needs: needs, timeout: .seconds(60),
            maxSilent: .seconds(60), state: state, summary: state.rawValue, queuedAt: now)
    }

    var build: BuildRecord {
        BuildRecord(
            id: 1, repositoryID: 1, forge: "github", repository: "o/r", sha: String(repeating: "a", count: 40),
            ref: "refs/heads/main", state: .running, summary: "", createdAt: now, startedAt: now)
    }

    @Test func runnableWaitsForEveryNeed() {
        let jobs = [job(1, "a", state: .succeeded), job(2, "b", state: .running), job(3, "c", needs: ["a"]), job(4, "d", needs: ["a", "b"])]
        #expect(BuildProgress.runnable(jobs).map(\.name) == ["c"])
    }

    @Test func failureSkipsDependentsTransitivelyAndConcludes() {
        let jobs = [
            job(1, "a", state: .failed), job(2, "b", needs: ["a"]), job(3, "c", needs: ["b"]), job(4, "d", state: .succeeded),
        ]
        let update = BuildProgress.afterJobEnded(build, jobs: jobs, now: now.addingTimeInterval(5))
        #expect(update.jobChanges.map(\.jobID) == [2, 3])
        #expect(update.jobChanges.map(\.state) == [.skipped, .skipped])
        #expect(update.jobChanges.map(\.summary) == ["skipped: needs 'a', which failed", "skipped: needs 'b', which was skipped"])
        #expect(update.build == .init(state: .failed, summary: "a: failed"))
        #expect(update.statuses.map(\.context) == ["kiln/b", "kiln/c", "kiln"])
        #expect(update.statuses.last?.state == .failed)
    }

    @Test func buildGoesOnWhileJobsRemain() {
        let jobs = [job(1, "a", state: .succeeded), job(2, "b", needs: ["a"])]
        #expect(BuildProgress.afterJobEnded(build, jobs: jobs, now: now) == BuildProgress.Update())
    }

    @Test(arguments: [
        ([JobState.succeeded, .succeeded], BuildState.succeeded, StatusState.succeeded, "all 2 jobs built in 1m 05s"),
        ([.succeeded, .timedOut], .failed, .failed, "j2: timed_out"),
        ([.failed, .failed, .succeeded], .failed, .failed, "2 of 3 jobs failed: j1, j2"),
        ([.errored, .succeeded], .errored, .errored, "j1: errored"),
        ([.cancelled, .succeeded], .cancelled, .cancelled, "cancelled"),
        ([.failed, .errored], .failed, .failed, "j1: failed"),
    ])
    func conclusion(states: [JobState], build: BuildState, status: StatusState, summary: String) {
        let jobs = states.enumerated().map { job(JobID($0 + 1), "j\($0 + 1)", state: $1) }
        let (state, statusState, description) = BuildProgress.conclusion(jobs, startedAt: now, now: now.addingTimeInterval(65))
        #expect(state == build)
        #expect(statusState == status)
        #expect(description == summary)
    }

    @Test func plannedStatusesArePending() {
        let statuses = BuildProgress.plannedStatuses([
            PlannedJob(name: "a", target: .installables([".#a"]), needs: [], timeout: .seconds(1), maxSilent: .seconds(1)),
            PlannedJob(name: "b", target: .installables([".#b"]), needs: ["a"], timeout: .seconds(1), maxSilent: .seconds(1)),
        ])
        #expect(statuses == [
            StatusUpdate(context: "kiln", state: .pending, description: "2 jobs queued"),
            StatusUpdate(context: "kiln/a", state: .pending, description: "queued"),
            StatusUpdate(context: "kiln/b", state: .pending, description: "waiting for a"),
        ])
    }
}

@Suite struct JobLogFileTests {
    @Test func capKeepsHeadAndTailWithAMarker() throws {
        let path = NSTemporaryDirectory() + "kiln-log-\(UUID().uuidString).log"
        defer { try? FileManager.default.removeItem(atPath: path) }
        let log = try JobLogFile(path: path, cap: 100)
        for line in 0..<1000 { log.write(Array(String(format: "line %04d\n", line).utf8)) }
        log.close()
        let text = try String(contentsOfFile: path, encoding: .utf8)
        #expect(text.hasPrefix("line 0000\nline 0001\n"))
        #expect(text.hasSuffix("line 0998\nline 0999\n"))
        #expect(text.contains("[kiln] … "))
        #expect(text.contains("of output omitted"))
        #expect(!text.contains("line 0500"))
        #expect(text.utf8.count < 250)
    }

    @Test func smallLogIsKeptWhole() throws {
        let path = NSTemporaryDirectory() + "kiln-log-\(UUID().uuidString).log"
        defer { try? FileManager.default.removeItem(atPath: path) }
        let log = try JobLogFile(path: path, cap: 1 << 20)
        log.write(Array("one\n".utf8))
        log.note("two")
        log.close()
        #expect(try String(contentsOfFile: path, encoding: .utf8) == "one\n[kiln] two\n")
    }
}

@Suite struct DoorbellTests {
    // A lost ring would sleep for the hour: the time limit fails the test, not a stopwatch.
    @Test(.timeLimit(.minutes(1))) func ringBeforeWaitIsNotLost() async {
        let bell = Doorbell()
        let seen = bell.generation
        bell.ring()
        await bell.wait(after: seen, upTo: .seconds(3600))
        #expect(bell.generation == seen + 1)
    }

    @Test(.timeLimit(.minutes(2))) func ringWakesEveryWaiter() async {
        let bell = Doorbell()
        let seen = bell.generation
        // A waiter that slept until its timeout (an hour) would fail the time limit.
        let woken = await withTaskGroup(of: Int.self) { group in
            for _ in 0..<3 {
                group.addTask {
                    await bell.wait(after: seen, upTo: .seconds(3600))
                    return 1
                }
            }
            group.addTask {
                // Ring once all three are suspended, so the test covers waking registered waiters.
                while bell.waiterCount < 3 { await Task.yield() }
                bell.ring()
                return 0
            }
            return await group.reduce(0, +)
        }
        #expect(woken == 3 && bell.waiterCount == 0)
    }
}

@Suite struct BackoffTests {
    @Test func backoffDoublesUpToFiveMinutes() {
        #expect((1...10).map { StatusReporter.backoff(afterAttempts: $0) }
            == [1, 2, 4, 8, 16, 32, 64, 128, 256, 300].map { Duration.seconds($0) })
    }
}

@Suite struct JobDetailsTests {
    @Test func aLogWithBackticksCannotEndTheCodeBlock() {
        #expect(JobDetails.fenced("plain") == "```\nplain\n```\n")
        let log = "hello> ```\nhello> ````` done"
        let block = JobDetails.fenced(log)
        #expect(block == "``````\n\(log)\n``````\n")
    }
}
