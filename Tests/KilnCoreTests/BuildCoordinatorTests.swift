import Foundation
import KilnCore
import KilnPipeline
import KilnTesting
import Logging
import Testing

/// The coordinator over the hand-written in-memory store: what each transition writes, rings,
/// stops and publishes, including the races a real server meets.
@Suite struct BuildCoordinatorTests {
    static let jobs = [
        PlannedJob(name: "a", target: .installables([".#a"]), needs: [], timeout: .seconds(60), maxSilent: .seconds(60)),
        PlannedJob(name: "b", target: .installables([".#b"]), needs: [], timeout: .seconds(60), maxSilent: .seconds(60)),
    ]

    struct Fixture {
        let store = InMemoryStore()
        let coordinator: BuildCoordinator
        let repository: RepositoryID

        init() {
            coordinator = BuildCoordinator(store: store, logger: Logger(label: "test"))
            repository = store.repository(forge: "github", name: "octo/hello")
        }

        func delivery(_ id: String, sha: String = String(repeating: "1", count: 40)) -> NewDelivery {
            NewDelivery(forge: "github", deliveryID: id, repositoryID: repository, repository: "octo/hello", ref: .branch("main"), sha: sha)
        }

        /// A build with `jobs` planned and running.
        func running(_ id: String, jobs: [PlannedJob] = BuildCoordinatorTests.jobs) async throws -> BuildID {
            let build = try await coordinator.accept(delivery(id)).buildID
            _ = try #require(try await coordinator.claimBuildToPlan(excluding: []))
            try await coordinator.finishPlanning(build, .planned(jobs), resolution: nil)
            return build
        }

        func types(build: BuildID) async throws -> [String] {
            try await store.events(after: 0, filter: EventQuery(build: build), limit: 1000).map(\.event.type)
        }
    }

    static func report(_ outcome: JobOutcome) -> JobReport { JobReport(outcome: outcome, duration: .seconds(1)) }

    @Test func aBuildsLifePublishesEachTransitionOnceInOrder() async throws {
        let fixture = Fixture()
        let planning = fixture.coordinator.bells.planning.generation
        let build = try await fixture.running("d1", jobs: [Self.jobs[0]])
        #expect(fixture.coordinator.bells.planning.generation > planning, "a new build wakes the planner")
        let (claimed, stop) = try #require(try await fixture.coordinator.claimJob(freeMemory: .max))
        #expect(stop.reason == nil)
        let ended = try await fixture.coordinator.finishJob(claimed.job.id, Self.report(.succeeded), details: nil)
        #expect(ended.state == .succeeded)
        #expect(try await fixture.types(build: build) == [
            "build.queued", "build.planned", "build.started", "job.queued", "job.started", "job.finished", "build.finished",
        ])
    }

    @Test func aRedeliveryDuringPlanningChangesNothing() async throws {
        let fixture = Fixture()
        let first = try await fixture.coordinator.accept(fixture.delivery("d1"))
        let planning = try #require(try await fixture.coordinator.claimBuildToPlan(excluding: []))
        let bell = fixture.coordinator.bells.planning.generation
        let again = try await fixture.coordinator.accept(fixture.delivery("d1"))
        #expect(!again.isNew && again.buildID == first.buildID && planning.id == first.buildID)
        #expect(fixture.coordinator.bells.planning.generation == bell, "a redelivery wakes no one")
        #expect(try await fixture.store.buildDetails(first.buildID)?.build.state == .planning)
        #expect(try await fixture.types(build: first.buildID) == ["build.queued"])
    }

    @Test func cancellingDuringCheckoutStopsTheJobAndTheBuildEndsWithIt() async throws {
        let fixture = Fixture()
        let build = try await fixture.running("d1")
        // The job is claimed (checking out); the other is still queued.
        let (claimed, stop) = try #require(try await fixture.coordinator.claimJob(freeMemory: .max))
        let stopped = try await fixture.coordinator.cancel([build], .requested)
        #expect(stopped == [claimed.job.id])
        #expect(stop.reason == .requested, "the stop reaches the job while it checks out")
        let during = try #require(try await fixture.store.buildDetails(build))
        #expect(during.build.state == .running && during.jobs.map(\.state) == [.running, .cancelled])
        // The executor notices and reports; the build ends cancelled, once.
        let ended = try await fixture.coordinator.finishJob(claimed.job.id, Self.report(.cancelled(.requested)), details: nil)
        #expect(ended.state == .cancelled)
        #expect(try await fixture.types(build: build).filter { $0 == "build.finished" }.count == 1)
        #expect(try await fixture.coordinator.claimJob(freeMemory: .max) == nil, "nothing of a cancelled build starts")
    }

    @Test func aSupersedeWhileAJobFinishesEndsEverythingOnce() async throws {
        for _ in 0..<20 {
            let fixture = Fixture()
            let build = try await fixture.running("d1")
            let (first, _) = try #require(try await fixture.coordinator.claimJob(freeMemory: .max))
            let (second, _) = try #require(try await fixture.coordinator.claimJob(freeMemory: .max))
            async let finishing = fixture.coordinator.finishJob(first.job.id, Self.report(.succeeded), details: nil)
            async let superseding = fixture.coordinator.cancel([build], .superseded(by: String(repeating: "2", count: 40)))
            _ = try await (finishing, superseding)
            _ = try await fixture.coordinator.finishJob(
                second.job.id, Self.report(.cancelled(.superseded(by: String(repeating: "2", count: 40)))), details: nil)
            let details = try #require(try await fixture.store.buildDetails(build))
            #expect(details.build.state.isFinal && details.jobs.allSatisfy(\.state.isFinal))
            let types = try await fixture.types(build: build)
            #expect(types.filter { $0 == "build.finished" }.count == 1)
            #expect(types.filter { $0 == "job.finished" }.count == 2)
            // The last `kiln` status is final, and says what the build says.
            let kiln = details.statuses.last { $0.status.context == "kiln" }
            #expect(kiln?.status.description == details.build.summary)
        }
    }

    @Test func recoveryAfterARestartRequeuesAndPublishes() async throws {
        let fixture = Fixture()
        let build = try await fixture.running("d1", jobs: [Self.jobs[0]])
        let (claimed, _) = try #require(try await fixture.coordinator.claimJob(freeMemory: .max))
        // A new process: the same store, a fresh coordinator.
        let restarted = BuildCoordinator(store: fixture.store, logger: Logger(label: "test"))
        let recovered = try await restarted.recoverInterrupted()
        #expect(recovered.jobs == 1)
        #expect(try await fixture.store.job(claimed.job.id)?.state == .queued)
        #expect(try await fixture.types(build: build).last == "job.queued")
        let (again, _) = try #require(try await restarted.claimJob(freeMemory: .max))
        #expect(again.job.id == claimed.job.id && again.job.attempt == 2)
    }

    @Test func anApprovalQueuesTheBuildAndWakesThePlanner() async throws {
        let fixture = Fixture()
        let sha = String(repeating: "3", count: 40)
        var fork = fixture.delivery("d1", sha: sha)
        fork.pullRequest = PullRequestInfo(number: 9, headBranch: "f", baseBranch: "main", isFork: true)
        let build = try await fixture.coordinator.accept(fork).buildID
        _ = try await fixture.coordinator.claimBuildToPlan(excluding: [])
        try await fixture.coordinator.finishPlanning(build, .awaitingApproval(reason: "waiting for approval"), resolution: nil)
        let bell = fixture.coordinator.bells.planning.generation
        guard case .approved = try await fixture.coordinator.approve(build, sha: sha, by: "admin") else {
            Issue.record("not approved")
            return
        }
        #expect(fixture.coordinator.bells.planning.generation > bell)
        #expect(try await fixture.store.isApproved(pullRequest: 9, sha: sha, repository: fixture.repository))
        #expect(try await fixture.types(build: build).suffix(2) == ["build.planned", "build.queued"])
    }
}

extension BuildCoordinatorTests {
    @Test func aRerunOfWhatFailedKeepsWhatSucceeded() async throws {
        let fixture = Fixture()
        let original = try await fixture.running("d1")
        let (first, _) = try #require(try await fixture.coordinator.claimJob(freeMemory: .max))
        let (second, _) = try #require(try await fixture.coordinator.claimJob(freeMemory: .max))
        _ = try await fixture.coordinator.finishJob(first.job.id, Self.report(.succeeded), details: nil)
        _ = try await fixture.coordinator.finishJob(second.job.id, Self.report(.failed(exitCode: 1, reason: "x")), details: nil)

        let again = try #require(
            try await fixture.coordinator.rerun(
                sha: String(repeating: "1", count: 40), repository: fixture.repository, forge: "github", deliveryID: "r1",
                failedOnly: true))
        let planning = try #require(try await fixture.coordinator.claimBuildToPlan(excluding: []))
        #expect(planning.id == again.buildID && planning.rerunFailedOnly && planning.rerunOf == original)
        try await fixture.coordinator.finishPlanning(again.buildID, .rerunFailed(Self.jobs, of: original), resolution: nil)
        let planned = try #require(try await fixture.store.buildDetails(again.buildID))
        #expect(planned.jobs.map(\.name) == ["a", "b"] || planned.jobs.map(\.name) == ["b", "a"])
        let kept = try #require(planned.jobs.first { $0.name == first.job.name })
        #expect(kept.state == .succeeded && kept.summary.hasPrefix("kept from build #\(original)"))
        #expect(planned.statuses.contains { $0.status.context == kept.context && $0.status.state == .succeeded })
        // Only what failed runs again; its success ends the build succeeded.
        let (rerun, _) = try #require(try await fixture.coordinator.claimJob(freeMemory: .max))
        #expect(rerun.job.name == second.job.name)
        #expect(try await fixture.coordinator.claimJob(freeMemory: .max) == nil)
        let ended = try await fixture.coordinator.finishJob(rerun.job.id, Self.report(.succeeded), details: nil)
        #expect(ended.state == .succeeded)
    }
}
