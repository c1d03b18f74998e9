import Foundation
import GRDB
import Logging
import KilnCore
import KilnPipeline
import KilnTesting
import Testing

@testable import KilnStore

@Suite struct SQLStoreTests {
    let sha = String(repeating: "b", count: 40)
    let now = Date(timeIntervalSince1970: 1_800_000_000)

    func withStore(_ body: (SQLStore, RepositoryID) async throws -> Void) async throws {
        try await withTemporaryDirectory("kiln-store") { directory in
            let store = try SQLStore(path: directory.appending("kiln.sqlite"))
            let ids = try await store.syncRepositories([("github", "octo/hello")])
            try await body(store, ids[0])
        }
    }

    func delivery(_ id: String, _ repository: RepositoryID) -> NewDelivery {
        NewDelivery(forge: "github", deliveryID: id, repositoryID: repository, repository: "octo/hello", ref: .branch("main"), sha: sha)
    }

    func plan(_ names: [(String, [String])]) -> PlanningResult {
        .planned(names.map { PlannedJob(name: $0.0, target: .installables([".#\($0.0)"]), needs: $0.1, timeout: .seconds(60), maxSilent: .seconds(30)) })
    }

    @Test func acceptIsIdempotentOnTheDeliveryID() async throws {
        try await withStore { store, repository in
            let first = try await store.accept(delivery("d-1", repository), at: now)
            let again = try await store.accept(delivery("d-1", repository), at: now)
            let other = try await store.accept(delivery("d-2", repository), at: now)
            #expect(first.isNew && !again.isNew && other.isNew)
            #expect(again.buildID == first.buildID)
            #expect(other.buildID != first.buildID)
            #expect(try await store.recentBuilds(limit: 10).map(\.state) == [.queued, .queued])
        }
    }

    @Test func repositoryIDsAreStableAcrossSyncs() async throws {
        try await withTemporaryDirectory("kiln-store") { directory in
            let path = directory.appending("kiln.sqlite")
            let first = try await SQLStore(path: path).syncRepositories([("github", "a/b"), ("github", "c/d")])
            let second = try await SQLStore(path: path).syncRepositories([("github", "c/d"), ("github", "A/B"), ("github", "e/f")])
            #expect(second[0] == first[1])
            #expect(second[1] == first[0])
            #expect(!first.contains(second[2]))
        }
    }

    @Test func planningQueuesJobsAndPendingStatusesInOneStep() async throws {
        try await withStore { store, repository in
            let build = try await store.accept(delivery("d", repository), at: now).buildID
            #expect(try await store.claimBuildToPlan()?.id == build)
            #expect(try await store.claimBuildToPlan() == nil)
            try await store.finishPlanning(build, plan([("a", []), ("b", ["a"])]), resolution: nil, at: now)
            let details = try #require(try await store.buildDetails(build))
            #expect(details.build.state == .running)
            #expect(details.jobs.map(\.name) == ["a", "b"])
            #expect(details.statuses.map(\.status.context) == ["kiln", "kiln/a", "kiln/b"])
            #expect(details.statuses.allSatisfy { $0.status.state == .pending && $0.delivery == .pending })
        }
    }

    @Test func invalidAndErroredPlansPostOneStatusSkippedPostsNone() async throws {
        try await withStore { store, repository in
            let results: [(PlanningResult, BuildState, [StatusState])] = [
                (.invalid(summary: ".kiln.yml:1:1: x", diagnostics: [".kiln.yml:1:1: x"]), .failed, [.failed]),
                (.errored("cannot fetch"), .errored, [.errored]),
                (.skipped(reason: "filtered", announce: false), .skipped, []),
                (.skipped(reason: "skipped: the commit message says [skip ci]", announce: true), .skipped, [.skipped]),
            ]
            for (index, (result, state, statuses)) in results.enumerated() {
                let build = try await store.accept(delivery("d\(index)", repository), at: now).buildID
                _ = try await store.claimBuildToPlan()
                try await store.finishPlanning(build, result, resolution: nil, at: now)
                let details = try #require(try await store.buildDetails(build))
                #expect(details.build.state == state)
                #expect(details.statuses.map(\.status.state) == statuses)
            }
        }
    }

    @Test func jobsRunInNeedsOrderAndAFailureConcludesTheBuild() async throws {
        try await withStore { store, repository in
            let build = try await store.accept(delivery("d", repository), at: now).buildID
            _ = try await store.claimBuildToPlan()
            try await store.finishPlanning(build, plan([("a", []), ("b", ["a"]), ("c", [])]), resolution: nil, at: now)
            let first = try #require(try await store.claimRunnableJob(at: now, freeMemory: .max))
            let second = try #require(try await store.claimRunnableJob(at: now, freeMemory: .max))
            #expect([first.job.name, second.job.name] == ["a", "c"])
            #expect(try await store.claimRunnableJob(at: now, freeMemory: .max) == nil)
            #expect(first.job.attempt == 1)
            let failure = JobReport(outcome: .failed(exitCode: 100, reason: "no"), exitCode: 100, duration: .seconds(1))
            #expect(try await store.finishJob(first.job.id, failure, details: nil, at: now).state == .running)
            let ended = try await store.finishJob(second.job.id, JobReport(outcome: .succeeded, duration: .seconds(1)), details: nil, at: now)
            #expect(ended.state == .failed)
            let details = try #require(try await store.buildDetails(build))
            #expect(details.jobs.map(\.state) == [.failed, .skipped, .succeeded])
            #expect(details.statuses.map { "\($0.status.context)=\($0.status.state.rawValue)" }.suffix(4)
                == ["kiln/a=failed", "kiln/b=cancelled", "kiln/c=succeeded", "kiln=failed"])
        }
    }

    @Test func aJobWaitsUntilItsMinMemoryIsFree() async throws {
        try await withStore { store, repository in
            let build = try await store.accept(delivery("d", repository), at: now).buildID
            _ = try await store.claimBuildToPlan()
            try await store.finishPlanning(
                build,
                .planned([
                    PlannedJob(name: "big", target: .installables([".#big"]), needs: [], timeout: .seconds(60),
                        maxSilent: .seconds(60), minMemory: 8 << 30),
                    PlannedJob(name: "small", target: .installables([".#small"]), needs: [], timeout: .seconds(60),
                        maxSilent: .seconds(60), minMemory: 1 << 20),
                ]), resolution: nil, at: now)
            // With 2 GiB free the big job waits and the small one, queued after it, runs.
            #expect(try await store.claimRunnableJob(at: now, freeMemory: 2 << 30)?.job.name == "small")
            #expect(try await store.claimRunnableJob(at: now, freeMemory: 2 << 30) == nil)
            #expect(try await store.claimRunnableJob(at: now, freeMemory: 16 << 30)?.job.name == "big")
        }
    }

    /// A database from before running statuses (v4) keeps its unsent statuses and takes running ones.
    @Test func upgradingFromV4KeepsTheOutbox() async throws {
        try await withTemporaryDirectory("kiln-store") { directory in
            let path = directory.appending("kiln.sqlite")
            do {
                let old = try DatabaseQueue(path: path)
                try Schema.migrator.migrate(old, upTo: "v4: re-runs")
                try await old.write { db in
                    try db.execute(sql: "INSERT INTO repositories (forge, name) VALUES ('github', 'octo/hello')")
                    try db.execute(
                        sql: """
                            INSERT INTO builds (repository_id, forge, repository, sha, ref, state, summary, created_at)
                            VALUES (1, 'github', 'octo/hello', ?, 'refs/heads/main', 'running', 'building', 0)
                            """, arguments: [sha])
                    try db.execute(
                        sql: """
                            INSERT INTO status_outbox (build_id, forge, repository, sha, context, state, description, delivery,
                                                       next_attempt_at, created_at)
                            VALUES (1, 'github', 'octo/hello', ?, 'kiln', 'pending', 'unsent before the upgrade', 'pending', 0, 0)
                            """, arguments: [sha])
                }
                try old.close()
            }
            let store = try SQLStore(path: path)
            let kept = try #require(try await store.buildDetails(1)).statuses
            #expect(kept.map { "\($0.status.state.rawValue) \($0.status.description) \($0.delivery.rawValue)" }
                == ["pending unsent before the upgrade pending"])
            let repository = try await store.syncRepositories([("github", "octo/hello")])[0]
            let build = try await store.accept(delivery("after", repository), at: now).buildID
            _ = try await store.claimBuildToPlan()
            try await store.finishPlanning(build, plan([("a", [])]), resolution: nil, at: now)
            _ = try #require(try await store.claimRunnableJob(at: now, freeMemory: .max))
            #expect(try #require(try await store.buildDetails(build)).statuses.map(\.status.state).contains(.running))
        }
    }

    @Test func newerStatusSupersedesAnUnsentOne() async throws {
        try await withStore { store, repository in
            let build = try await store.accept(delivery("d", repository), at: now).buildID
            _ = try await store.claimBuildToPlan()
            try await store.finishPlanning(build, plan([("a", [])]), resolution: nil, at: now)
            let job = try #require(try await store.claimRunnableJob(at: now, freeMemory: .max))
            _ = try await store.finishJob(job.job.id, JobReport(outcome: .succeeded, duration: .seconds(1)), details: nil, at: now)
            let due = try await store.dueStatuses(at: now, limit: 100).due
            // The pending and running statuses were never sent; only the final one per context is due.
            #expect(due.map { "\($0.status.context)=\($0.status.state.rawValue)" } == ["kiln/a=succeeded", "kiln=succeeded"])
            let all = try #require(try await store.buildDetails(build)).statuses
            #expect(
                all.filter { $0.delivery == .superseded }.map { "\($0.status.context)=\($0.status.state.rawValue)" }
                    == ["kiln=pending", "kiln/a=pending", "kiln=running", "kiln/a=running"])
        }
    }

    @Test func retriesWaitAndDeliveredEntriesLeave() async throws {
        try await withStore { store, repository in
            let build = try await store.accept(delivery("d", repository), at: now).buildID
            _ = try await store.claimBuildToPlan()
            try await store.finishPlanning(build, .errored("x"), resolution: nil, at: now)
            let entry = try #require(try await store.dueStatuses(at: now, limit: 10).due.first)
            try await store.recordStatusDelivery(entry.id, .retry(at: now.addingTimeInterval(30), error: "HTTP 502"), at: now)
            let waiting = try await store.dueStatuses(at: now.addingTimeInterval(10), limit: 10)
            #expect(waiting.due.isEmpty)
            #expect(waiting.nextDue == now.addingTimeInterval(30))
            let due = try await store.dueStatuses(at: now.addingTimeInterval(31), limit: 10).due
            #expect(due.map(\.attempts) == [1])
            #expect(due.first?.lastError == "HTTP 502")
            try await store.recordStatusDelivery(entry.id, .delivered, at: now)
            #expect(try await store.dueStatuses(at: now.addingTimeInterval(100), limit: 10).due.isEmpty)
        }
    }

    @Test func garbageCollectionRemovesOnlyOldFinishedBuildsAndTheirLogs() async throws {
        try await withTemporaryDirectory("kiln-gc") { directory in
            let store = try SQLStore(path: directory.appending("kiln.sqlite"))
            let repository = try await store.syncRepositories([("github", "octo/hello")])[0]
            let paths = WorkerPaths(dataDirectory: directory.path)
            try FileManager.default.createDirectory(atPath: paths.logs, withIntermediateDirectories: true)
            // An old build that ended, an old build still running, and a recent build that ended.
            var ids: [BuildID] = []
            for (index, delivery) in ["old", "running", "recent"].enumerated() {
                let at = now.addingTimeInterval(index == 2 ? -3600 : -100 * 86400)
                let build = try await store.accept(self.delivery(delivery, repository), at: at).buildID
                _ = try await store.claimBuildToPlan()
                try await store.finishPlanning(build, plan([("a", [])]), resolution: nil, at: at)
                let job = try #require(try await store.claimRunnableJob(at: at, freeMemory: .max))
                try "log".write(toFile: paths.log(job.job.id), atomically: true, encoding: .utf8)
                try FileManager.default.createDirectory(atPath: paths.derivationLogs(job.job.id), withIntermediateDirectories: true)
                if delivery != "running" {
                    _ = try await store.finishJob(job.job.id, JobReport(outcome: .succeeded, duration: .seconds(1)), details: nil, at: at)
                }
                ids.append(build)
            }
            let collector = GarbageCollector(
                coordinator: BuildCoordinator(store: store, logger: .init(label: "test")), paths: paths,
                retention: .seconds(30 * 86400), logger: .init(label: "test"))
            let removed = try await collector.collect(now: now)
            #expect(removed.builds == 1 && removed.jobs == 1)
            #expect(try await store.buildDetails(ids[0]) == nil)
            #expect(try await store.buildDetails(ids[1]) != nil)
            #expect(try await store.buildDetails(ids[2]) != nil)
            #expect(!FileManager.default.fileExists(atPath: paths.log(1)))
            #expect(!FileManager.default.fileExists(atPath: paths.derivationLogs(1)))
            #expect(FileManager.default.fileExists(atPath: paths.log(2)))
            #expect(try await collector.collect(now: now).builds == 0)
        }
    }

    @Test func recoveryRequeuesInterruptedWork() async throws {
        try await withStore { store, repository in
            let planning = try await store.accept(delivery("p", repository), at: now).buildID
            let running = try await store.accept(delivery("r", repository), at: now).buildID
            _ = try await store.claimBuildToPlan()
            _ = try await store.claimBuildToPlan()
            try await store.finishPlanning(running, plan([("a", [])]), resolution: nil, at: now)
            _ = try await store.claimRunnableJob(at: now, freeMemory: .max)
            let recovered = try await store.recoverInterrupted(at: now)
            #expect(recovered.builds == 1 && recovered.jobs == 1)
            #expect(try await store.buildDetails(planning)?.build.state == .queued)
            let again = try #require(try await store.claimRunnableJob(at: now, freeMemory: .max))
            #expect(again.job.attempt == 2)
        }
    }
}

/// Intake's durability: FULL synchronous commits, shared by concurrent deliveries.
@Suite struct GroupCommitTests {
    @Test func commitsAreFullySynchronous() async throws {
        try await withTemporaryDirectory("kiln-sync") { directory in
            let store = try SQLStore(path: directory.appending("kiln.sqlite"))
            #expect(try await store.synchronousSetting() == 2)
        }
    }

    /// Many deliveries at once, some of them the same delivery twice: each gets its own build,
    /// a repeated id gets the same build once as new, and everything is there after a reopen.
    @Test func concurrentDeliveriesAreAllRecordedOnce() async throws {
        try await withTemporaryDirectory("kiln-group") { directory in
            let path = directory.appending("kiln.sqlite")
            let store = try SQLStore(path: path)
            let repository = try await store.syncRepositories([("github", "octo/hello")])[0]
            let ids = (0..<300).map { "d\($0 % 250)" }
            let results = try await withThrowingTaskGroup(of: (String, BuildID, Bool).self) { group in
                for id in ids {
                    group.addTask {
                        let delivery = NewDelivery(
                            forge: "github", deliveryID: id, repositoryID: repository, repository: "octo/hello", ref: .branch("main"),
                            sha: String(repeating: "1", count: 40))
                        let accepted = try await store.accept(delivery, at: Date())
                        return (id, accepted.buildID, accepted.isNew)
                    }
                }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            #expect(results.filter(\.2).count == 250)
            #expect(Set(results.map(\.1)).count == 250)
            for (id, build, _) in results { #expect(results.filter { $0.0 == id }.allSatisfy { $0.1 == build }) }
            let reopened = try SQLStore(path: path)
            #expect(try await reopened.recentBuilds(limit: 1000).count == 250)
        }
    }

    /// A delivery the database refuses (here: of a repository it does not know) fails alone; the
    /// deliveries committed with it in one batch are recorded.
    @Test func oneRefusedDeliveryFailsAlone() async throws {
        try await withTemporaryDirectory("kiln-group-failure") { directory in
            let store = try SQLStore(path: directory.appending("kiln.sqlite"))
            let repository = try await store.syncRepositories([("github", "octo/hello")])[0]
            let outcomes = await withTaskGroup(of: (Int, Bool).self) { group in
                for index in 0..<64 {
                    group.addTask {
                        let delivery = NewDelivery(
                            forge: "github", deliveryID: "d\(index)", repositoryID: index == 17 ? repository + 1000 : repository,
                            repository: "octo/hello", ref: .branch("main"), sha: String(repeating: "2", count: 40))
                        return (index, (try? await store.accept(delivery, at: Date())) != nil)
                    }
                }
                return await group.reduce(into: [:]) { $0[$1.0] = $1.1 }
            }
            #expect(outcomes.filter { !$0.value }.map(\.key) == [17])
            #expect(try await store.recentBuilds(limit: 100).count == 63)
        }
    }
}
