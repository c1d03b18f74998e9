import Foundation
import KilnCore
import KilnPipeline
import Testing

/// The build's state machine as a table: state and input → new state, summary and actions.
@Suite struct BuildStateMachineTests {
    static let now = Date(timeIntervalSince1970: 1_000_000)
    static let job = PlannedJob(name: "a", target: .installables([".#a"]), needs: [], timeout: .seconds(60), maxSilent: .seconds(60))

    static let planning: [(String, PlanningResult, BuildState, String, [StatusState])] = [
        ("planned", .planned([job]), .running, "1 job queued", [.pending, .pending]),
        ("skipped, announced", .skipped(reason: "[skip ci]", announce: true), .skipped, "[skip ci]", [.skipped]),
        ("skipped quietly", .skipped(reason: "superseded", announce: false), .skipped, "superseded", []),
        ("awaiting approval", .awaitingApproval(reason: "waiting for approval"), .awaitingApproval, "waiting for approval", [.pending]),
        ("invalid", .invalid(summary: ".kiln.yml:1:1: bad", diagnostics: [".kiln.yml:1:1: bad"]), .failed, ".kiln.yml:1:1: bad", [.failed]),
        ("errored", .errored("fetch failed"), .errored, "fetch failed", [.errored]),
    ]

    @Test(arguments: planning)
    func planningEnds(name: String, result: PlanningResult, state: BuildState, summary: String, statuses: [StatusState]) {
        var machine = BuildStateMachine(state: .planning, summary: "fetching and reading the pipeline file")
        let actions = machine.finishPlanning(result)
        #expect(machine.state == state, "\(name)")
        #expect(machine.summary == summary, "\(name)")
        #expect(actions.contains(.persist(state, summary: summary, diagnostics: name == "invalid" ? [".kiln.yml:1:1: bad"] : [])), "\(name)")
        let enqueued = actions.flatMap { action -> [StatusState] in
            if case .enqueue(let updates) = action { return updates.map(\.state) }
            return []
        }
        #expect(enqueued == statuses, "\(name)")
    }

    @Test func aBuildNoLongerPlanningIsLeftAsItIs() {
        var machine = BuildStateMachine(state: .cancelled, summary: "cancelled")
        #expect(machine.finishPlanning(.planned([Self.job])).isEmpty)
        #expect(machine.state == .cancelled)
    }

    @Test func claimingMovesAQueuedBuildToPlanning() {
        var machine = BuildStateMachine(state: .queued, summary: "queued")
        #expect(machine.claim() == [.persist(.planning, summary: "fetching and reading the pipeline file", diagnostics: [])])
        #expect(machine.state == .planning)
    }

    @Test func reuseTakesTheEarlierBuildsEndAndJobs() {
        let earlier = BuildRecord(
            id: 3, repositoryID: 1, forge: "github", repository: "o/r", sha: String(repeating: "a", count: 40), ref: "refs/heads/main",
            state: .failed, summary: "1 of 1 jobs failed", createdAt: Self.now, startedAt: Self.now, finishedAt: Self.now)
        let job = JobRecord(
            id: 9, buildID: 3, name: "a", target: .installables([".#a"]), needs: [], timeout: .seconds(60), maxSilent: .seconds(60),
            state: .failed, summary: "failed", queuedAt: Self.now)
        var machine = BuildStateMachine(state: .planning, summary: "")
        let actions = machine.finishPlanning(.reused(3), earlier: (earlier, [job]))
        #expect(machine.state == .failed)
        #expect(machine.summary == "same tree and pipeline as build #3: 1 of 1 jobs failed")
        #expect(actions.first == .reuseJobs(from: 3, summaries: [9: "reused from build #3: failed"]))
        guard case .enqueue(let statuses)? = actions.last else {
            Issue.record("\(actions)")
            return
        }
        #expect(statuses.map(\.context) == ["kiln/a", "kiln"] && statuses.map(\.state) == [.failed, .failed])
        // The earlier build is gone: an error, not a silent success.
        var orphan = BuildStateMachine(state: .planning, summary: "")
        _ = orphan.finishPlanning(.reused(4), earlier: nil)
        #expect(orphan.state == .errored)
    }

    @Test func finalStatesMapToStatuses() {
        #expect(BuildStateMachine.statusState(JobState.timedOut) == .failed)
        #expect(BuildStateMachine.statusState(JobState.skipped) == .cancelled)
        #expect(BuildStateMachine.statusState(BuildState.skipped) == .skipped)
        #expect(BuildStateMachine.statusState(BuildState.errored) == .errored)
    }
}

extension BuildStateMachineTests {
    static func job(_ id: JobID, _ state: JobState) -> JobRecord {
        JobRecord(
            id: id, buildID: 1, name: "j\(id)", target: .installables([".#j\(id)"]), needs: [], timeout: .seconds(60),
            maxSilent: .seconds(60), state: state, summary: state.rawValue, queuedAt: now)
    }

    @Test func cancellingEndsQueuedJobsAndStopsRunningOnes() {
        var machine = BuildStateMachine(state: .running, summary: "building 3 jobs")
        let actions = machine.cancel(.requested, jobs: [Self.job(1, .queued), Self.job(2, .running), Self.job(3, .succeeded)])
        #expect(actions == [
            .cancelJobs([1], summary: "cancelled"), .stopJobs([2], summary: "cancelled"),
            .enqueue([StatusUpdate(context: "kiln/j1", state: .cancelled, description: "cancelled")]),
        ])
        #expect(machine.state == .running, "the build ends with its last running job")
    }

    @Test func cancellingABuildWithNothingRunningEndsIt() {
        var machine = BuildStateMachine(state: .awaitingApproval, summary: "waiting")
        let actions = machine.cancel(.pullRequestClosed(merged: false), jobs: [])
        #expect(machine.state == .cancelled)
        #expect(actions.first == .persist(.cancelled, summary: machine.summary, diagnostics: []))
        #expect(machine.summary.contains("closed"))
        var ended = BuildStateMachine(state: .succeeded, summary: "done")
        #expect(ended.cancel(.requested, jobs: []).isEmpty)
    }
}
