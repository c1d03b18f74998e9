import Foundation
import KilnCore
import KilnPipeline
import KilnTesting
import Testing

/// The store contract, continued: decisions across builds, restarts, the watchdog's reads,
/// retention and the outbox, for every backend.
extension StoreContractTests {
    /// A build planned with `jobs`, its tree key `tree`.
    func planned(
        _ store: any KilnStore, _ repository: RepositoryID, _ id: String, sha: String = String(repeating: "1", count: 40),
        tree: String? = nil, jobs: [PlannedJob] = jobs
    ) async throws -> BuildID {
        let build = try await store.accept(delivery(id, repository, sha: sha), at: now).buildID
        _ = try #require(try await store.claimBuildToPlan())
        let resolution = BuildResolution(sha: sha, builtSHA: sha, trusted: true, treeKey: tree)
        try await store.finishPlanning(build, .planned(jobs), resolution: resolution, at: now)
        return build
    }

    @Test(arguments: Backend.allCases)
    func aReusedBuildCopiesTheEarlierJobsAndEnd(backend: Backend) async throws {
        try await withStore(backend) { store, repository in
            let first = try await planned(store, repository, "d1", tree: "t1", jobs: [Self.jobs[0]])
            let job = try #require(try await store.claimRunnableJob(at: now, freeMemory: .max))
            _ = try await store.finishJob(job.job.id, JobReport(outcome: .succeeded, duration: .seconds(1)), details: nil, at: now)
            #expect(try await store.reusableBuild(treeKey: "t1", repository: repository, excluding: .max, trustedOnly: true) == first)
            #expect(try await store.reusableBuild(treeKey: "t2", repository: repository, excluding: .max, trustedOnly: true) == nil)

            let second = try await store.accept(delivery("d2", repository), at: now).buildID
            _ = try await store.claimBuildToPlan()
            try await store.finishPlanning(second, .reused(first), resolution: nil, at: now)
            let details = try #require(try await store.buildDetails(second))
            #expect(details.build.state == .succeeded)
            #expect(details.jobs.map(\.name) == ["a"] && details.jobs[0].id != job.job.id)
            #expect(details.jobs[0].summary.hasPrefix("reused from build #\(first)"))
        }
    }

    @Test(arguments: Backend.allCases)
    func approvalRecordsTheCommitAndQueuesTheBuild(backend: Backend) async throws {
        try await withStore(backend) { store, repository in
            let sha = String(repeating: "2", count: 40)
            var fork = delivery("d1", repository, sha: sha)
            fork.pullRequest = PullRequestInfo(number: 4, headBranch: "f", baseBranch: "main", isFork: true)
            let build = try await store.accept(fork, at: now).buildID
            _ = try await store.claimBuildToPlan()
            try await store.finishPlanning(build, .awaitingApproval(reason: "waits"), resolution: nil, at: now)
            #expect(try await store.awaitingApproval(sha: sha, repository: repository) == build)
            #expect(try await store.latestHead(pullRequest: 4, repository: repository) == sha)
            let wrong = try await store.approve(build, sha: String(repeating: "3", count: 40), by: "admin", at: now)
            #expect(wrong == .differentCommit(current: sha))
            guard case .approved(let approved) = try await store.approve(build, sha: sha, by: "admin", at: now) else {
                Issue.record("not approved")
                return
            }
            #expect(approved.state == .queued)
            #expect(try await store.isApproved(pullRequest: 4, sha: sha, repository: repository))
            #expect(try await store.buildDetails(build)?.build.state == .queued)
            #expect(try await store.approve(.max, sha: sha, by: "admin", at: now) == .notFound)
        }
    }

    @Test(arguments: Backend.allCases)
    func aRerunIsANewBuildOncePerDelivery(backend: Backend) async throws {
        try await withStore(backend) { store, repository in
            let sha = String(repeating: "4", count: 40)
            let original = try await store.accept(delivery("d1", repository, sha: sha), at: now).buildID
            let again = try #require(try await store.rerun(sha: sha, repository: repository, forge: "github", deliveryID: "r1", at: now))
            let twice = try #require(try await store.rerun(sha: sha, repository: repository, forge: "github", deliveryID: "r1", at: now))
            #expect(again.isNew && !twice.isNew && again.buildID == twice.buildID && again.buildID != original)
            let rerun = try #require(try await store.buildDetails(again.buildID)).build
            #expect(rerun.rerunOf == original && rerun.state == .queued)
            #expect(try await store.rerun(sha: String(repeating: "5", count: 40), repository: repository, forge: "github",
                deliveryID: "r2", at: now) == nil)
        }
    }

    @Test(arguments: Backend.allCases)
    func recoveryQueuesInterruptedWorkAndTheWatchdogFindsOverdueWork(backend: Backend) async throws {
        try await withStore(backend) { store, repository in
            let running = try await planned(store, repository, "d1")
            let job = try #require(try await store.claimRunnableJob(at: now, freeMemory: .max))
            _ = try await store.accept(delivery("d2", repository), at: now)
            let planning = try #require(try await store.claimBuildToPlan())
            let later = now.addingTimeInterval(3600)
            let overdue = try await store.overdue(at: later, jobGrace: 60, planningLimit: 600)
            #expect(overdue.jobs == [job.job.id] && overdue.builds == [planning.id])
            #expect(try await store.overdue(at: now, jobGrace: 60, planningLimit: 600).jobs.isEmpty)

            #expect(try await store.underWay() == [running, planning.id])
            let recovered = try await store.recoverInterrupted(at: now)
            #expect(recovered.builds == 1 && recovered.jobs == 1)
            #expect(try await store.job(job.job.id)?.state == .queued)
            #expect(try await store.buildDetails(planning.id)?.build.state == .queued)
            // Started again, the job counts its attempts.
            #expect(try await store.claimRunnableJob(at: now, freeMemory: .max)?.job.attempt == 2)
        }
    }

    @Test(arguments: Backend.allCases)
    func retentionRemovesEndedBuildsAndKeepsTheirReruns(backend: Backend) async throws {
        try await withStore(backend) { store, repository in
            let sha = String(repeating: "6", count: 40)
            let old = try await planned(store, repository, "d1", sha: sha, jobs: [Self.jobs[0]])
            let job = try #require(try await store.claimRunnableJob(at: now, freeMemory: .max))
            _ = try await store.finishJob(job.job.id, JobReport(outcome: .succeeded, duration: .seconds(1)), details: nil, at: now)
            let rerun = try #require(try await store.rerun(sha: sha, repository: repository, forge: "github", deliveryID: "r", at: now))
            let removed = try await store.removeBuilds(endedBefore: now.addingTimeInterval(1))
            #expect(removed.builds == 1 && removed.jobs == [job.job.id])
            #expect(try await store.buildDetails(old) == nil)
            #expect(try await store.buildDetails(rerun.buildID)?.build.rerunOf == nil)
        }
    }

    @Test(arguments: Backend.allCases)
    func retentionKeepsTheNewestBuildOfEachBranchAndPullRequest(backend: Backend) async throws {
        try await withStore(backend) { store, repository in
            let (a, b, c) = (String(repeating: "a", count: 40), String(repeating: "b", count: 40), String(repeating: "c", count: 40))
            var builds: [BuildID] = []
            for (id, ref, sha, pull) in [("1", "main", a, nil), ("2", "main", b, nil), ("3", "dev", a, nil), ("4", "feature", c, 7)] as [(String, String, String, Int?)] {
                var push = delivery(id, repository, sha: sha)
                push.ref = .branch(ref)
                push.pullRequest = pull.map { PullRequestInfo(number: $0, headBranch: ref, baseBranch: "main", isFork: false) }
                push.reconciled = id == "3"
                let build = try await store.accept(push, at: now).buildID
                _ = try await store.claimBuildToPlan()
                try await store.finishPlanning(build, .skipped(reason: "nothing", announce: false), resolution: nil, at: now)
                builds.append(build)
            }
            #expect(try await store.buildDetails(builds[2])?.build.reconciled == true)
            #expect(try await store.buildDetails(builds[1])?.build.reconciled == false)
            // Seen: by ref for pushes, by number for pull requests, a prefix matching the full id.
            #expect(try await store.hasBuild(sha: a, ref: "refs/heads/main", pullRequest: nil, repository: repository))
            #expect(try await store.hasBuild(sha: String(b.prefix(12)), ref: "refs/heads/main", pullRequest: nil, repository: repository))
            #expect(try await !store.hasBuild(sha: c, ref: "refs/heads/main", pullRequest: nil, repository: repository))
            #expect(try await !store.hasBuild(sha: c, ref: "refs/heads/feature", pullRequest: nil, repository: repository))
            #expect(try await store.hasBuild(sha: String(c.prefix(12)), ref: nil, pullRequest: 7, repository: repository))
            #expect(try await !store.hasBuild(sha: c, ref: nil, pullRequest: 8, repository: repository))

            let removed = try await store.removeBuilds(endedBefore: now.addingTimeInterval(1))
            #expect(removed.builds == 1)
            #expect(try await store.buildDetails(builds[0]) == nil)
            for kept in builds.dropFirst() { #expect(try await store.buildDetails(kept) != nil) }
        }
    }

    @Test(arguments: Backend.allCases)
    func concurrentChangesToOneBuildLoseNothing(backend: Backend) async throws {
        try await withStore(backend) { store, repository in
            // Twelve jobs of one build end at once, and deliveries arrive meanwhile: every change
            // is a transaction that sees the others' (PostgreSQL runs a conflicting one again).
            let jobs = (0..<12).map {
                PlannedJob(name: "j\($0)", target: .installables([".#j\($0)"]), needs: [], timeout: .seconds(60), maxSilent: .seconds(60))
            }
            let build = try await planned(store, repository, "d0", jobs: jobs)
            var claimed: [JobID] = []
            while let job = try await store.claimRunnableJob(at: now, freeMemory: .max) { claimed.append(job.job.id) }
            #expect(claimed.count == 12)
            try await withThrowingTaskGroup(of: Void.self) { group in
                for job in claimed {
                    group.addTask {
                        _ = try await store.finishJob(job, JobReport(outcome: .succeeded, duration: .seconds(1)), details: nil, at: self.now)
                    }
                }
                for index in 0..<12 {
                    group.addTask { _ = try await store.accept(self.delivery("c\(index)", repository), at: self.now) }
                }
                try await group.waitForAll()
            }
            let details = try #require(try await store.buildDetails(build))
            #expect(details.build.state == .succeeded, "\(details.build.summary)")
            #expect(details.jobs.allSatisfy { $0.state == .succeeded })
            let pending = details.statuses.filter { $0.delivery == .pending && $0.status.context == "kiln" }
            #expect(pending.map(\.status.state) == [.succeeded])
            #expect(try await store.queueStats().queuedBuilds == 12)
        }
    }

    @Test(arguments: Backend.allCases)
    func aLapsedLeaseIsTakenOverAndTheLateReportChangesNothing(backend: Backend) async throws {
        try await withStore(backend) { store, repository in
            _ = try await planned(store, repository, "d1", jobs: [Self.jobs[0]])
            let job = try #require(try await store.claimRunnableJob(at: now, freeMemory: .max)).job
            #expect(job.owner == store.lease.owner)
            #expect(job.leaseUntil == now.addingTimeInterval(store.lease.duration))
            // Held: another instance finds nothing to take over.
            let early = now.addingTimeInterval(10)
            let none = try await store.recoverInterrupted(at: early, leasesEndedBy: early)
            #expect(none.builds == 0 && none.jobs == 0)
            let renewed = now.addingTimeInterval(20)
            #expect(try await store.renewLeases(at: renewed) == [job.id: nil])
            #expect(try await store.job(job.id)?.leaseUntil == renewed.addingTimeInterval(store.lease.duration))
            // Lapsed: queued again; the old holder's late report changes nothing.
            let late = renewed.addingTimeInterval(store.lease.duration + 1)
            let taken = try await store.recoverInterrupted(at: late, leasesEndedBy: late)
            #expect(taken.builds == 0 && taken.jobs == 1)
            #expect(try await store.renewLeases(at: late) == [:])
            _ = try await store.finishJob(job.id, JobReport(outcome: .succeeded, duration: .seconds(1)), details: nil, at: late)
            #expect(try await store.job(job.id)?.state == .queued)
            #expect(try await store.claimRunnableJob(at: late, freeMemory: .max)?.job.attempt == 2)
        }
    }

    @Test(arguments: Backend.allCases)
    func statusesAreClaimedOnceUntilPostedOrTheClaimLapses(backend: Backend) async throws {
        try await withStore(backend) { store, repository in
            _ = try await planned(store, repository, "d1", jobs: [Self.jobs[0]])
            let first = try await store.dueStatuses(at: now, limit: 50).due
            #expect(!first.isEmpty)
            // Claimed: not handed out again while it is being posted.
            #expect(try await store.dueStatuses(at: now, limit: 50).due.isEmpty)
            try await store.recordStatusDelivery(first[0].id, .delivered, at: now)
            // A newer status of a context still being posted waits for that post.
            let pendingContext = first[1].status.context
            _ = try await store.claimRunnableJob(at: now, freeMemory: .max)
            let next = try await store.dueStatuses(at: now, limit: 50).due
            #expect(!next.map(\.status.context).contains(pendingContext), "\(next.map(\.status.context))")
            // A claim that lapses (its instance died) is handed out again.
            let lapsed = try await store.dueStatuses(at: now.addingTimeInterval(61), limit: 50).due
            #expect(Set(lapsed.map(\.status.context)).contains(pendingContext))
            // At the start of a database's one instance, every claim ends at once.
            _ = try await store.claimRunnableJob(at: now, freeMemory: .max)
            #expect(try await store.dueStatuses(at: now.addingTimeInterval(62), limit: 50).due.isEmpty)
            try await store.releaseStatusClaims(endedBy: .distantFuture)
            #expect(try await !store.dueStatuses(at: now.addingTimeInterval(62), limit: 50).due.isEmpty)
        }
    }

    @Test(arguments: Backend.allCases)
    func aJobRecordsTheRemoteBuildersThatBuiltIt(backend: Backend) async throws {
        try await withStore(backend) { store, repository in
            _ = try await planned(store, repository, "d1", jobs: [Self.jobs[0]])
            let job = try #require(try await store.claimRunnableJob(at: now, freeMemory: .max))
            var report = JobReport(outcome: .succeeded, duration: .seconds(1), built: ["/nix/store/x.drv"])
            report.machines = ["ssh-ng://builder@10.0.0.2"]
            _ = try await store.finishJob(job.job.id, report, details: nil, at: now)
            #expect(try await store.job(job.job.id)?.machines == ["ssh-ng://builder@10.0.0.2"])
        }
    }

    @Test(arguments: Backend.allCases)
    func aNewerStatusSupersedesAPendingOneAndRetriesWait(backend: Backend) async throws {
        try await withStore(backend) { store, repository in
            let build = try await planned(store, repository, "d1", jobs: [Self.jobs[0]])
            _ = try #require(try await store.claimRunnableJob(at: now, freeMemory: .max))
            let statuses = try #require(try await store.buildDetails(build)).statuses
            // Each context has one pending entry: the newest.
            let pending = statuses.filter { $0.delivery == .pending }
            #expect(Set(pending.map(\.status.context)).count == pending.count)
            #expect(pending.first { $0.status.context == "kiln/a" }?.status.state == .running)
            let entry = try #require(pending.first)
            try await store.recordStatusDelivery(entry.id, .retry(at: now.addingTimeInterval(30), error: "503"), at: now)
            let (due, next) = try await store.dueStatuses(at: now, limit: 100)
            #expect(!due.contains { $0.id == entry.id } && next == now.addingTimeInterval(30))
            try await store.recordStatusDelivery(entry.id, .dropped(error: "422"), at: now)
            let dropped = try #require(try await store.buildDetails(build)).statuses.first { $0.id == entry.id }
            #expect(dropped?.delivery == .dropped && dropped?.lastError == "422" && dropped?.attempts == 2)
        }
    }
}

extension StoreContractTests {
    @Test(arguments: Backend.allCases)
    func tokensAreDigestsThatWorkUntilRevoked(backend: Backend) async throws {
        try await withStore(backend) { store, _ in
            let tokens = try #require(store as? any TokenStore)
            let (token, text) = try await TokenText.create(name: "ci-bot", scope: .control, in: tokens, at: now)
            #expect(text.hasPrefix("kiln_\(token.id)_") && text.count == "kiln_\(token.id)_".count + 64)
            #expect(await TokenText.scope(of: text, in: tokens) == .control)
            // One character off, another id, or no secret at all: nothing.
            let flipped = String(text.dropLast()) + (text.hasSuffix("0") ? "1" : "0")
            #expect(await TokenText.scope(of: flipped, in: tokens) == nil)
            #expect(await TokenText.scope(of: "kiln_\(token.id + 1)_" + text.suffix(64), in: tokens) == nil)
            #expect(await TokenText.scope(of: "kiln_\(token.id)_", in: tokens) == nil)
            await #expect(throws: TokenError.nameTaken("ci-bot")) {
                _ = try await TokenText.create(name: "ci-bot", scope: .read, in: tokens)
            }
            await #expect(throws: TokenError.invalidName("has space")) {
                _ = try await TokenText.create(name: "has space", scope: .read, in: tokens)
            }
            try await tokens.revokeToken(name: "ci-bot", at: now)
            #expect(await TokenText.scope(of: text, in: tokens) == nil)
            #expect(try await tokens.tokens().map(\.revokedAt) == [now])
            await #expect(throws: TokenError.unknown("nobody")) { try await tokens.revokeToken(name: "nobody", at: now) }
        }
    }
}

extension StoreContractTests {
    @Test(arguments: Backend.allCases)
    func buildsListByFiltersAndCursorAndBranchesShowTheirNewest(backend: Backend) async throws {
        try await withStore(backend) { store, repository in
            var ids: [BuildID] = []
            for (index, branch) in ["main", "dev", "main", "main"].enumerated() {
                var push = delivery("d\(index)", repository)
                push.ref = .branch(branch)
                ids.append(try await store.accept(push, at: now).buildID)
            }
            // A pull request from a fork's branch named main is not a push of main.
            var pull = delivery("pr", repository)
            pull.ref = .branch("main")
            pull.pullRequest = PullRequestInfo(number: 3, headBranch: "main", baseBranch: "main", isFork: true)
            let forked = try await store.accept(pull, at: now).buildID
            let mains = try await store.builds(BuildListQuery(repository: "octo/hello", branch: "main", limit: 2))
            #expect(!mains.contains { $0.id == forked })
            #expect(mains.map(\.id) == [ids[3], ids[2]])
            let older = try await store.builds(BuildListQuery(branch: "main", before: ids[2], limit: 2))
            #expect(older.map(\.id) == [ids[0]])
            #expect(try await store.builds(BuildListQuery(state: .running)).isEmpty)
            #expect(try await store.builds(BuildListQuery(repository: "octo/other")).isEmpty)
            let branches = try await store.branches(forge: "github", repository: "octo/hello")
            #expect(branches.map(\.ref) == ["refs/heads/dev", "refs/heads/main"] && branches.map(\.id) == [ids[1], ids[3]])
            // Planning records the commit's title.
            _ = try await store.claimBuildToPlan()
            try await store.finishPlanning(
                ids[0], .skipped(reason: "x", announce: false),
                resolution: BuildResolution(sha: String(repeating: "1", count: 40), builtSHA: String(repeating: "1", count: 40),
                    trusted: true, treeKey: nil, title: BuildResolution.title(of: "Fix the thing\n\nLong story.")),
                at: now)
            #expect(try await store.buildDetails(ids[0])?.build.title == "Fix the thing")
        }
    }
}
