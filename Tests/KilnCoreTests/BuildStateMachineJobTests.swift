import Foundation
import KilnCore
import KilnPipeline
import Testing

/// A running build's jobs start and end, a restart and an approval: the machine as tables.
@Suite struct BuildStateMachineJobTests {
    static let now = Date(timeIntervalSince1970: 1_000_000)

    static func build(_ state: BuildState, summary: String = "running", cancelReason: String? = nil) -> BuildRecord {
        BuildRecord(
            id: 1, repositoryID: 1, forge: "github", repository: "o/r", sha: String(repeating: "a", count: 40), ref: "refs/heads/main",
            state: state, summary: summary, createdAt: now, startedAt: now.addingTimeInterval(-30),
            pullRequest: PullRequestInfo(number: 7, headBranch: "f", baseBranch: "main", isFork: true), cancelReason: cancelReason)
    }

    static func job(_ id: JobID, _ state: JobState, needs: [String] = [], allowFailure: Bool = false) -> JobRecord {
        JobRecord(
            id: id, buildID: 1, name: "j\(id)", target: .installables([".#j\(id)"]), needs: needs, timeout: .seconds(60),
            maxSilent: .seconds(60), allowFailure: allowFailure, state: state, summary: state.rawValue, queuedAt: now)
    }

    static func report(_ outcome: JobOutcome) -> JobReport {
        JobReport(outcome: outcome, exitCode: nil, derivations: [], outputs: [], duration: .seconds(5))
    }

    static func statuses(_ actions: [BuildStateMachine.Action]) -> [String] {
        actions.flatMap { action -> [String] in
            guard case .enqueue(let updates) = action else { return [] }
            return updates.map { "\($0.context) \($0.state.rawValue): \($0.description)" }
        }
    }

    // MARK: Start

    @Test func theFirstJobToStartMovesTheBuildToItsEvaluation() {
        var machine = BuildStateMachine(Self.build(.running))
        let jobs = [Self.job(1, .queued), Self.job(2, .queued)]
        let actions = machine.startJob(jobs[0], of: jobs)
        #expect(actions.first == .startJob(1, summary: "building"))
        #expect(actions.contains(.summarize("evaluating 2 jobs")))
        #expect(Self.statuses(actions) == ["kiln running: evaluating 2 jobs", "kiln/j1 running: building"])
        #expect(machine.summary == "evaluating 2 jobs")
    }

    @Test func aLaterJobOnlyStartsItself() {
        var machine = BuildStateMachine(Self.build(.running, summary: "building 2 jobs"))
        let jobs = [Self.job(1, .running), Self.job(2, .queued)]
        let actions = machine.startJob(jobs[1], of: jobs)
        #expect(actions == [.startJob(2, summary: "building"), .enqueue([StatusUpdate(context: "kiln/j2", state: .running, description: "building")])])
        #expect(machine.summary == "building 2 jobs")
    }

    // MARK: Finish

    /// jobs before (states), which one ends and how → build state after, statuses enqueued.
    static let endings: [(String, [JobRecord], JobID, JobOutcome, BuildState, [String])] = [
        (
            "one of two succeeds: the build goes on", [job(1, .running), job(2, .running)], 1, .succeeded, .running,
            ["kiln/j1 succeeded: built 0 outputs in 5 s"]
        ),
        (
            "the last succeeds: the build succeeds", [job(1, .succeeded), job(2, .running)], 2, .succeeded, .succeeded,
            ["kiln/j2 succeeded: built 0 outputs in 5 s", "kiln succeeded: all 2 jobs built in 30 s"]
        ),
        (
            "a failure skips what needs it, and ends the build",
            [job(1, .running), job(2, .queued, needs: ["j1"]), job(3, .queued, needs: ["j2"])], 1, .failed(exitCode: 1, reason: "x"),
            .failed,
            [
                "kiln/j1 failed: failed after 5 s (nix exit 1): x",
                "kiln/j2 cancelled: skipped: needs 'j1', which failed",
                "kiln/j3 cancelled: skipped: needs 'j2', which was skipped",
                "kiln failed: j1: failed after 5 s (nix exit 1): x",
            ]
        ),
        (
            "an allowed failure lets the build succeed", [job(1, .succeeded), job(2, .running, allowFailure: true)], 2,
            .timedOut(after: .seconds(60), silent: false), .succeeded,
            [
                "kiln/j2 failed: allowed to fail: timed out after 1m",
                "kiln succeeded: 1 of 2 jobs built in 30 s; allowed to fail: j2",
            ]
        ),
    ]

    @Test(arguments: endings)
    func aJobEnds(name: String, jobs: [JobRecord], ending: JobID, outcome: JobOutcome, state: BuildState, statuses: [String]) {
        let build = Self.build(.running)
        var machine = BuildStateMachine(build)
        let actions = machine.finishJob(ending, Self.report(outcome), details: nil, build: build, jobs: jobs, at: Self.now)
        #expect(machine.state == state, "\(name)")
        #expect(Self.statuses(actions) == statuses, "\(name)")
        guard case .endJob(let id, _, _, let report)? = actions.first else {
            Issue.record("\(name): \(actions)")
            return
        }
        #expect(id == ending && report != nil, "\(name)")
    }

    @Test func aJobAlreadyEndedKeepsItsEnd() {
        let build = Self.build(.running)
        var machine = BuildStateMachine(build)
        let actions = machine.finishJob(
            1, Self.report(.succeeded), details: nil, build: build, jobs: [Self.job(1, .errored), Self.job(2, .running)], at: Self.now)
        #expect(actions.isEmpty)
    }

    @Test func theMarkdownAccountGoesWithTheJobsStatus() {
        let build = Self.build(.running)
        var machine = BuildStateMachine(build)
        let actions = machine.finishJob(
            1, Self.report(.succeeded), details: "## built", build: build, jobs: [Self.job(1, .running), Self.job(2, .running)],
            at: Self.now)
        #expect(actions.contains(.enqueue([
            StatusUpdate(context: "kiln/j1", state: .succeeded, description: "built 0 outputs in 5 s", details: "## built")
        ])))
    }

    // MARK: Restart

    @Test func aRestartPlansAgainAndQueuesRunningJobsAgain() {
        var planning = BuildStateMachine(Self.build(.planning))
        #expect(planning.recover(Self.build(.planning), jobs: [], at: Self.now)
            == [.persist(.queued, summary: "queued again: Kiln restarted while planning it", diagnostics: [])])
        let running = Self.build(.running)
        var machine = BuildStateMachine(running)
        let actions = machine.recover(running, jobs: [Self.job(1, .running), Self.job(2, .queued), Self.job(3, .running)], at: Self.now)
        #expect(actions == [.requeueJobs([1, 3], summary: "queued again: Kiln restarted while it ran")])
        #expect(machine.state == .running)
        var ended = BuildStateMachine(Self.build(.succeeded))
        #expect(ended.recover(Self.build(.succeeded), jobs: [], at: Self.now).isEmpty)
    }

    @Test func aRestartEndsTheJobsOfACancelledBuildInsteadOfRunningThemAgain() {
        let build = Self.build(.running, cancelReason: "superseded by abcdef1")
        var machine = BuildStateMachine(build)
        let actions = machine.recover(build, jobs: [Self.job(1, .running), Self.job(2, .succeeded)], at: Self.now)
        #expect(actions.first == .endJob(1, .cancelled, summary: "superseded by abcdef1", report: nil))
        #expect(Self.statuses(actions) == ["kiln/j1 cancelled: superseded by abcdef1", "kiln cancelled: superseded by abcdef1"])
        #expect(machine.state == .cancelled)
    }

    // MARK: Evaluation

    @Test func theEvaluationRecordsDerivationsAndRestartsRunningClocks() {
        var machine = BuildStateMachine(Self.build(.running, summary: "evaluating 2 jobs"))
        let jobs = [Self.job(1, .running), Self.job(2, .queued), Self.job(3, .failed)]
        let found = ["j1": ["/nix/store/a.drv"], "j2": ["/nix/store/b.drv"], "j3": ["/nix/store/c.drv"]]
        let actions = machine.notePhase("building 2 jobs", derivations: found, jobs: jobs)
        #expect(actions == [
            .recordDerivations([1: ["/nix/store/a.drv"], 2: ["/nix/store/b.drv"]]), .restartClocks([1]),
            .summarize("building 2 jobs"), .enqueue([StatusUpdate(context: "kiln", state: .running, description: "building 2 jobs")]),
        ])
        #expect(machine.notePhase("building 2 jobs", derivations: [:], jobs: jobs).isEmpty, "the same phase twice posts once")
        var ended = BuildStateMachine(Self.build(.cancelled))
        #expect(ended.notePhase("building", derivations: found, jobs: jobs).isEmpty)
    }

    // MARK: Approval

    static let approvals: [(String, BuildState, String, String)] = [
        ("the commit it waits for", .awaitingApproval, String(repeating: "a", count: 40), "approved"),
        ("another commit", .awaitingApproval, String(repeating: "b", count: 40), "differentCommit"),
        ("a build not waiting", .running, String(repeating: "a", count: 40), "notAwaiting"),
    ]

    @Test(arguments: approvals)
    func anApproval(name: String, state: BuildState, sha: String, expected: String) {
        let build = Self.build(state)
        var machine = BuildStateMachine(build)
        let (result, actions) = machine.approve(build, sha: sha, by: "admin")
        switch result {
        case .approved(let approved):
            #expect(expected == "approved" && approved.state == .queued && approved.summary == "approved by admin; queued", "\(name)")
            #expect(actions == [
                .recordApproval(pullRequest: 7, sha: sha, approver: "admin"),
                .persist(.queued, summary: "approved by admin; queued", diagnostics: []),
            ])
        case .differentCommit(let current):
            #expect(expected == "differentCommit" && current == build.sha && actions.isEmpty, "\(name)")
        case .notAwaiting(let current):
            #expect(expected == "notAwaiting" && current == state && actions.isEmpty, "\(name)")
        case .notFound:
            Issue.record("\(name): a machine never says not found")
        }
    }
}

extension BuildStateMachineJobTests {
    @Test func aRerunOfWhatFailedWhenNothingFailedEndsAsTheOriginal() {
        let original = Self.build(.succeeded, summary: "all 1 jobs built")
        var machine = BuildStateMachine(state: .planning, summary: "")
        let planned = PlannedJob(name: "j1", target: .installables([".#j1"]), needs: [], timeout: .seconds(60), maxSilent: .seconds(60))
        let actions = machine.finishPlanning(.rerunFailed([planned], of: 1), earlier: (original, [Self.job(1, .succeeded)]))
        #expect(machine.state == .succeeded && actions.contains { if case .reuseJobs = $0 { return true } else { return false } })
        // The original is gone: everything runs again.
        var orphan = BuildStateMachine(state: .planning, summary: "")
        _ = orphan.finishPlanning(.rerunFailed([planned], of: 1), earlier: nil)
        #expect(orphan.state == .running)
    }
}
