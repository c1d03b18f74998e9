import Foundation
import KilnCore
import KilnPipeline
import KilnTesting
import Testing

@testable import KilnStore
import Logging

@Suite struct BuildControlTests {
    let now = Date(timeIntervalSince1970: 1_800_000_000)
    let head = String(repeating: "1", count: 40)
    let other = String(repeating: "2", count: 40)

    func withStore(_ body: (SQLStore, RepositoryID) async throws -> Void) async throws {
        try await withTemporaryDirectory("kiln-control") { directory in
            let store = try SQLStore(path: directory.appending("kiln.sqlite"))
            try await body(store, try await store.syncRepositories([("github", "octo/hello")])[0])
        }
    }

    func pull(_ number: Int, sha: String, delivery: String, _ repository: RepositoryID) -> NewDelivery {
        NewDelivery(
            forge: "github", deliveryID: delivery, repositoryID: repository, repository: "octo/hello", ref: .branch("feature"),
            sha: sha, pullRequest: PullRequestInfo(number: number, headBranch: "feature", baseBranch: "main", isFork: true))
    }

    func push(_ sha: String, delivery: String, _ repository: RepositoryID) -> NewDelivery {
        NewDelivery(forge: "github", deliveryID: delivery, repositoryID: repository, repository: "octo/hello", ref: .branch("main"), sha: sha)
    }

    static let jobs = [PlannedJob(name: "a", target: .installables([".#a"]), needs: [], timeout: .seconds(60), maxSilent: .seconds(60)),
                       PlannedJob(name: "b", target: .installables([".#b"]), needs: [], timeout: .seconds(60), maxSilent: .seconds(60))]

    @Test func unfinishedBuildsAreFoundByBranchOrPullRequest() async throws {
        try await withStore { store, repository in
            let first = try await store.accept(push(head, delivery: "1", repository), at: now).buildID
            let second = try await store.accept(push(other, delivery: "2", repository), at: now).buildID
            let pr = try await store.accept(pull(5, sha: head, delivery: "3", repository), at: now).buildID
            #expect(try await store.unfinishedBuilds(.ref("refs/heads/main"), repository: repository, olderThan: second).map(\.id) == [first])
            #expect(try await store.unfinishedBuilds(.pullRequest(5), repository: repository, olderThan: .max).map(\.id) == [pr])
            #expect(try await store.latestHead(pullRequest: 5, repository: repository) == head)
            #expect(try await store.latestHead(pullRequest: 6, repository: repository) == nil)
        }
    }

    @Test func cancellingEndsQueuedWorkAndHandsBackRunningJobs() async throws {
        try await withStore { store, repository in
            let build = try await store.accept(push(head, delivery: "1", repository), at: now).buildID
            _ = try await store.claimBuildToPlan()
            try await store.finishPlanning(build, .planned(Self.jobs), resolution: nil, at: now)
            let running = try #require(try await store.claimRunnableJob(at: now, freeMemory: .max))
            let stop = try await store.cancel([build], .superseded(by: other), at: now)
            #expect(stop == [running.job.id])
            var details = try #require(try await store.buildDetails(build))
            #expect(details.build.state == .running)
            #expect(details.jobs.map(\.state) == [.running, .cancelled])
            #expect(details.statuses.last?.status == StatusUpdate(context: "kiln/b", state: .cancelled, description: "superseded by 2222222"))
            // The running job reports its cancellation; the build then ends cancelled.
            let ended = try await store.finishJob(
                running.job.id, JobReport(outcome: .cancelled(.superseded(by: other)), duration: .seconds(1)), details: nil, at: now)
            #expect(ended.state == .cancelled)
            details = try #require(try await store.buildDetails(build))
            #expect(details.statuses.filter { $0.delivery == .pending }.map { "\($0.status.context)=\($0.status.state.rawValue)" }
                == ["kiln/b=cancelled", "kiln/a=cancelled", "kiln=cancelled"])
            // Cancelling an ended build changes nothing.
            #expect(try await store.cancel([build], .requested, at: now).isEmpty)
        }
    }

    @Test func approvalIsForOneExactCommit() async throws {
        try await withStore { store, repository in
            let build = try await store.accept(pull(9, sha: head, delivery: "1", repository), at: now).buildID
            _ = try await store.claimBuildToPlan()
            try await store.finishPlanning(
                build, .awaitingApproval(reason: "awaiting approval"), resolution: BuildResolution(sha: head, builtSHA: head, trusted: false, treeKey: nil),
                at: now)
            #expect(try await store.buildDetails(build)?.build.state == .awaitingApproval)
            #expect(try await store.buildDetails(build)?.statuses.map(\.status.state) == [.pending])
            #expect(try await store.awaitingApproval(sha: head, repository: repository) == build)
            #expect(try await store.approve(build, sha: other, by: "maintainer", at: now) == .differentCommit(current: head))
            #expect(try await !store.isApproved(pullRequest: 9, sha: head, repository: repository))
            guard case .approved(let approved) = try await store.approve(build, sha: head, by: "maintainer", at: now) else {
                Issue.record("expected the approval to be taken")
                return
            }
            #expect(approved.state == .queued)
            #expect(try await store.isApproved(pullRequest: 9, sha: head, repository: repository))
            #expect(try await !store.isApproved(pullRequest: 9, sha: other, repository: repository))
            #expect(try await store.approve(build, sha: head, by: "maintainer", at: now) == .notAwaiting(.queued))
            #expect(try await store.approve(999, sha: head, by: "maintainer", at: now) == .notFound)
        }
    }

    @Test func rerunCopiesTheNewestBuildOfACommitOnce() async throws {
        try await withStore { store, repository in
            let original = try await store.accept(pull(4, sha: head, delivery: "1", repository), at: now).buildID
            let again = try #require(try await store.rerun(sha: head, repository: repository, forge: "github", deliveryID: "r1", at: now))
            #expect(again.isNew && again.buildID != original)
            let details = try #require(try await store.buildDetails(again.buildID))
            #expect(details.build.pullRequest?.number == 4 && details.build.sha == head && details.build.state == .queued)
            #expect(details.build.rerunOf == original)
            #expect(try await store.rerun(sha: head, repository: repository, forge: "github", deliveryID: "r1", at: now)! == (again.buildID, false))
            #expect(try await store.rerun(sha: other, repository: repository, forge: "github", deliveryID: "r2", at: now) == nil)
        }
    }

    @Test func anIdenticalTreeReusesTheEarlierResult() async throws {
        try await withStore { store, repository in
            let first = try await store.accept(push(head, delivery: "1", repository), at: now).buildID
            _ = try await store.claimBuildToPlan()
            try await store.finishPlanning(
                first, .planned(Self.jobs), resolution: BuildResolution(sha: head, builtSHA: head, trusted: true, treeKey: "tree:abc"), at: now)
            for _ in 0..<2 {
                let job = try #require(try await store.claimRunnableJob(at: now, freeMemory: .max))
                _ = try await store.finishJob(job.job.id, JobReport(outcome: .succeeded, duration: .seconds(1)), details: nil, at: now)
            }
            #expect(try await store.reusableBuild(treeKey: "tree:abc", repository: repository, excluding: 999, trustedOnly: false) == first)
            #expect(try await store.reusableBuild(treeKey: "tree:other", repository: repository, excluding: 999, trustedOnly: false) == nil)
            // A pull request whose merge has the same tree shares the result, with statuses on its own head.
            let second = try await store.accept(pull(2, sha: other, delivery: "2", repository), at: now).buildID
            _ = try await store.claimBuildToPlan()
            try await store.finishPlanning(
                second, .reused(first), resolution: BuildResolution(sha: other, builtSHA: head, trusted: true, treeKey: "tree:abc"), at: now)
            let details = try #require(try await store.buildDetails(second))
            #expect(details.build.state == .succeeded)
            #expect(details.jobs.map(\.state) == [.succeeded, .succeeded])
            #expect(details.statuses.map { "\($0.commit.sha.prefix(1)) \($0.status.context)=\($0.status.state.rawValue)" }
                == ["2 kiln/a=succeeded", "2 kiln/b=succeeded", "2 kiln=succeeded"])
            #expect(details.statuses.allSatisfy { $0.commit.branch == "feature" })
        }
    }

    /// Plans `build` with both jobs and runs them to `outcome`; returns the build.
    func finish(_ build: BuildID, _ store: SQLStore, trusted: Bool, tree: String) async throws {
        _ = try await store.claimBuildToPlan()
        try await store.finishPlanning(
            build, .planned(Self.jobs), resolution: BuildResolution(sha: head, builtSHA: head, trusted: trusted, treeKey: tree), at: now)
        for _ in 0..<2 {
            let job = try #require(try await store.claimRunnableJob(at: now, freeMemory: .max))
            _ = try await store.finishJob(job.job.id, JobReport(outcome: .succeeded, duration: .seconds(1)), details: nil, at: now)
        }
    }

    @Test func aTrustedBuildThatPushesReusesOnlyATrustedOne() async throws {
        try await withStore { store, repository in
            let fork = try await store.accept(pull(3, sha: head, delivery: "1", repository), at: now).buildID
            try await finish(fork, store, trusted: false, tree: "tree:t")
            #expect(try await store.reusableBuild(treeKey: "tree:t", repository: repository, excluding: 999, trustedOnly: true) == nil)
            #expect(try await store.reusableBuild(treeKey: "tree:t", repository: repository, excluding: 999, trustedOnly: false) == fork)
        }
    }

    @Test func aBuildCancelledWhileItsJobRanIsNotQueuedAgainAfterACrash() async throws {
        try await withStore { store, repository in
            let build = try await store.accept(push(head, delivery: "1", repository), at: now).buildID
            _ = try await store.claimBuildToPlan()
            try await store.finishPlanning(build, .planned(Self.jobs), resolution: nil, at: now)
            _ = try #require(try await store.claimRunnableJob(at: now, freeMemory: .max))
            _ = try await store.cancel([build], .requested, at: now)
            // Kiln dies before the running job reports; the next start recovers.
            let recovered = try await store.recoverInterrupted(at: now)
            #expect(recovered.jobs == 0)
            let details = try #require(try await store.buildDetails(build))
            #expect(details.build.state == .cancelled)
            #expect(details.jobs.map(\.state) == [.cancelled, .cancelled])
            #expect(details.statuses.filter { $0.delivery == .pending }.map { "\($0.status.context)=\($0.status.state.rawValue)" }.sorted()
                == ["kiln/a=cancelled", "kiln/b=cancelled", "kiln=cancelled"])
            #expect(try await store.claimRunnableJob(at: now, freeMemory: .max) == nil)
        }
    }

    @Test func retentionRemovesABuildThatAKeptBuildReusedOrReran() async throws {
        try await withStore { store, repository in
            let old = try await store.accept(push(head, delivery: "1", repository), at: now).buildID
            try await finish(old, store, trusted: true, tree: "tree:r")
            let later = now.addingTimeInterval(40 * 86400)
            let reusing = try await store.accept(push(other, delivery: "2", repository), at: later).buildID
            _ = try await store.claimBuildToPlan()
            try await store.finishPlanning(
                reusing, .reused(old), resolution: BuildResolution(sha: other, builtSHA: other, trusted: true, treeKey: "tree:r"), at: later)
            let rerun = try #require(try await store.rerun(sha: head, repository: repository, forge: "github", deliveryID: "r", at: later))
            let removed = try await store.removeBuilds(endedBefore: now.addingTimeInterval(86400))
            #expect(removed.builds == 1)
            #expect(try await store.buildDetails(old) == nil)
            #expect(try await store.buildDetails(reusing)?.jobs.map(\.state) == [.succeeded, .succeeded])
            #expect(try await store.buildDetails(rerun.buildID)?.build.rerunOf == nil)
        }
    }
}

/// The watchdog ends what nothing else would, with final statuses.
@Suite struct WatchdogTests {
    @Test func overdueJobsAndHungPlanningEndErrored() async throws {
        try await withTemporaryDirectory("kiln-watchdog") { directory in
            let store = try SQLStore(path: directory.appending("kiln.sqlite"))
            let repository = try await store.syncRepositories([("github", "octo/hello")])[0]
            let start = Date()
            let delivery = { (id: String, sha: String) in
                NewDelivery(forge: "github", deliveryID: id, repositoryID: repository, repository: "octo/hello", ref: .branch("main"), sha: sha)
            }
            let running = try await store.accept(delivery("1", String(repeating: "1", count: 40)), at: start).buildID
            _ = try await store.claimBuildToPlan()
            try await store.finishPlanning(running, .planned(BuildControlTests.jobs), resolution: nil, at: start)
            let job = try #require(try await store.claimRunnableJob(at: start, freeMemory: .max))
            let planning = try await store.accept(delivery("2", String(repeating: "2", count: 40)), at: start).buildID
            _ = try await store.claimBuildToPlan()
            let watchdog = Watchdog(coordinator: BuildCoordinator(store: store, logger: .init(label: "test")), logger: .init(label: "test"))
            // Within the job's timeout (60 s) and grace, and the planning limit: nothing happens.
            #expect(await watchdog.sweep(now: start.addingTimeInterval(600)) == (0, 0))
            let ended = await watchdog.sweep(now: start.addingTimeInterval(2 * 3600))
            #expect(ended == (1, 1))
            let details = try #require(try await store.buildDetails(running))
            #expect(details.jobs.first { $0.id == job.job.id }?.state == .errored)
            #expect(details.statuses.last { $0.status.context == "kiln/a" }?.status.state == .errored)
            let hung = try #require(try await store.buildDetails(planning))
            #expect(hung.build.state == .errored)
            #expect(hung.statuses.last?.status.state == .errored)
            #expect(hung.build.summary.hasPrefix("planning took longer than 60 min"))
        }
    }
}
