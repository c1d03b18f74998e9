import Foundation
import KilnCore
import KilnPipeline
import KilnTesting
import Logging
import Testing

@testable import KilnStore

/// What every store backend must do, run against each: a file (a pool, WAL, synchronous FULL),
/// SQLite in memory (a queue), a fresh database on a throwaway PostgreSQL server, and the
/// hand-written fake the coordinator tests use.
@Suite struct StoreContractTests {
    enum Backend: String, CaseIterable, Sendable {
        case file, memory, postgres, fake
    }

    let now = Date(timeIntervalSince1970: 1_800_000_000)

    func withStore(_ backend: Backend, _ body: (any KilnStore, RepositoryID) async throws -> Void) async throws {
        try await withTemporaryDirectory("kiln-contract") { directory in
            switch backend {
            case .file, .memory:
                let store = backend == .file ? try SQLStore(path: directory.appending("kiln.sqlite")) : try SQLStore.inMemory()
                try await body(store, try await store.syncRepositories([("github", "octo/hello")])[0])
            case .postgres:
                let server = try await PostgresServer.shared()
                let store = try await SQLStore.postgres(
                    PostgresLocation(host: "127.0.0.1", port: server.port, username: "postgres", database: try await server.newDatabase()),
                    logger: Logger(label: "contract"))
                do {
                    try await body(store, try await store.syncRepositories([("github", "octo/hello")])[0])
                    await store.close()
                } catch {
                    await store.close()
                    throw error
                }
            case .fake:
                let store = InMemoryStore()
                try await body(store, store.repository(forge: "github", name: "octo/hello"))
            }
        }
    }

    func delivery(_ id: String, _ repository: RepositoryID, sha: String = String(repeating: "1", count: 40)) -> NewDelivery {
        NewDelivery(forge: "github", deliveryID: id, repositoryID: repository, repository: "octo/hello", ref: .branch("main"), sha: sha)
    }

    static let jobs = [
        PlannedJob(name: "a", target: .installables([".#a"]), needs: [], timeout: .seconds(60), maxSilent: .seconds(60)),
        PlannedJob(name: "b", target: .installables([".#b"]), needs: ["a"], timeout: .seconds(60), maxSilent: .seconds(60)),
    ]

    @Test(arguments: Backend.allCases)
    func aBuildsLifeFromDeliveryToItsEnd(backend: Backend) async throws {
        try await withStore(backend) { store, repository in
            // Intake is idempotent on the delivery id, and announces the build in the same commit.
            let first = try await store.accept(delivery("d1", repository), at: now)
            let again = try await store.accept(delivery("d1", repository), at: now)
            #expect(first.isNew && !again.isNew && first.buildID == again.buildID)
            #expect(try await store.events(after: 0, filter: EventQuery(), limit: 10).map(\.event.type) == ["build.queued"])

            let claimed = try #require(try await store.claimBuildToPlan())
            let none = try await store.claimBuildToPlan()
            #expect(claimed.state == .planning && none == nil)
            try await store.finishPlanning(claimed.id, .planned(Self.jobs), resolution: nil, at: now)
            // `b` needs `a`: only `a` may start.
            let job = try #require(try await store.claimRunnableJob(at: now, freeMemory: .max))
            let blocked = try await store.claimRunnableJob(at: now, freeMemory: .max)
            #expect(job.job.name == "a" && blocked == nil)
            let afterA = try await store.finishJob(job.job.id, JobReport(outcome: .succeeded, duration: .seconds(1)), details: nil, at: now)
            #expect(afterA.state == .running)
            let second = try #require(try await store.claimRunnableJob(at: now, freeMemory: .max))
            let ended = try await store.finishJob(
                second.job.id, JobReport(outcome: .failed(exitCode: 100, reason: "boom"), duration: .seconds(1)), details: nil, at: now)
            #expect(ended.state == .failed)

            let details = try #require(try await store.buildDetails(claimed.id))
            #expect(details.jobs.map(\.state) == [.succeeded, .failed])
            let kiln = details.statuses.filter { $0.status.context == "kiln" }.map(\.status.state)
            #expect(kiln.first == .pending && kiln.last == .failed)
            // Delivered statuses leave the outbox's due list.
            let due = try await store.dueStatuses(at: now.addingTimeInterval(1), limit: 100).due
            #expect(!due.isEmpty)
            for entry in due { try await store.recordStatusDelivery(entry.id, .delivered, at: now) }
            #expect(try await store.dueStatuses(at: now.addingTimeInterval(1), limit: 100).due.isEmpty)
        }
    }

    @Test(arguments: Backend.allCases)
    func cacheActivityAddsUpWhatJobsDidWithTheStore(backend: Backend) async throws {
        try await withStore(backend) { store, repository in
            let build = try await store.accept(delivery("d1", repository), at: now).buildID
            _ = try await store.claimBuildToPlan()
            try await store.finishPlanning(build, .planned(Self.jobs), resolution: nil, at: now)
            let a = try #require(try await store.claimRunnableJob(at: now, freeMemory: .max))
            var report = JobReport(
                outcome: .succeeded, derivations: ["/nix/store/a.drv", "/nix/store/b.drv", "/nix/store/c.drv"], duration: .seconds(1),
                built: ["/nix/store/a.drv"])
            report.substituted = 3
            report.cachePushedBytes = 1000
            _ = try await store.finishJob(a.job.id, report, details: nil, at: now)
            let b = try #require(try await store.claimRunnableJob(at: now, freeMemory: .max))
            _ = try await store.finishJob(
                b.job.id,
                JobReport(outcome: .failed(exitCode: 100, reason: "x"), derivations: ["/nix/store/d.drv"], duration: .seconds(1), built: ["/nix/store/d.drv"]),
                details: nil, at: now.addingTimeInterval(5))
            // The build ended with its second job, at now + 5 s.
            let activity = try await store.buildStatistics(repository: nil, service: nil, since: now.addingTimeInterval(-60)).activity
            #expect(activity == CacheActivity(jobs: 2, built: 2, substituted: 3, alreadyValid: 2, pushes: 1, pushedBytes: 1000))
            #expect(activity.hitRate == 5.0 / 7.0)
            #expect(try await store.buildStatistics(repository: nil, service: nil, since: now.addingTimeInterval(4)).activity.jobs == 2)
            #expect(try await store.buildStatistics(repository: nil, service: nil, since: now.addingTimeInterval(6)).activity == CacheActivity())
        }
    }

    @Test(arguments: Backend.allCases)
    func buildStatisticsCountWhatEndedInTheWindow(backend: Backend) async throws {
        try await withStore(backend) { store, repository in
            var first = delivery("d1", repository)
            first.service = "svc"
            let succeeded = try await store.accept(first, at: now).buildID
            _ = try await store.claimBuildToPlan()
            try await store.finishPlanning(succeeded, .planned([Self.jobs[0]]), resolution: nil, at: now)
            let a = try #require(try await store.claimRunnableJob(at: now, freeMemory: .max))
            var report = JobReport(
                outcome: .succeeded, derivations: ["/nix/store/a.drv"], outputs: [BuiltOutput(name: "out", path: "/nix/store/a", narSize: 300)],
                duration: .seconds(1), built: ["/nix/store/a.drv"])
            report.substituted = 1
            _ = try await store.finishJob(a.job.id, report, details: nil, at: now.addingTimeInterval(10))
            let failed = try await store.accept(delivery("d2", repository, sha: String(repeating: "2", count: 40)), at: now).buildID
            _ = try await store.claimBuildToPlan()
            try await store.finishPlanning(failed, .planned([Self.jobs[0]]), resolution: nil, at: now)
            let b = try #require(try await store.claimRunnableJob(at: now, freeMemory: .max))
            _ = try await store.finishJob(
                b.job.id, JobReport(outcome: .failed(exitCode: 1, reason: "x"), duration: .seconds(1)), details: nil, at: now.addingTimeInterval(20))

            let all = try await store.buildStatistics(repository: nil, service: nil, since: now.addingTimeInterval(-60))
            #expect(all.builds == [.succeeded: 1, .failed: 1])
            #expect(all.successRate == 0.5)
            #expect(all.outputs == 1 && all.outputBytes == 300 && all.averageOutputBytes == 300)
            #expect(all.activity.jobs == 2 && all.activity.built == 1 && all.activity.substituted == 1)
            #expect(all.jobSeconds == 30)
            let service = try await store.buildStatistics(repository: nil, service: "svc", since: now.addingTimeInterval(-60))
            #expect(service.builds == [.succeeded: 1] && service.successRate == 1)
            #expect(try await store.buildStatistics(repository: "octo/other", service: nil, since: now.addingTimeInterval(-60)).builds.isEmpty)
            #expect(try await store.buildStatistics(repository: nil, service: nil, since: now.addingTimeInterval(60)).builds.isEmpty)
        }
    }

    @Test(arguments: Backend.allCases)
    func jobHistoryFiltersByDerivationStateTimeAndCursor(backend: Backend) async throws {
        try await withStore(backend) { store, repository in
            let build = try await store.accept(delivery("d1", repository), at: now).buildID
            _ = try await store.claimBuildToPlan()
            var jobs = Self.jobs
            jobs[0].tags = ["team": "platform"]
            try await store.finishPlanning(build, .planned(jobs), resolution: nil, at: now)
            let a = try #require(try await store.claimRunnableJob(at: now, freeMemory: .max))
            _ = try await store.finishJob(
                a.job.id,
                JobReport(outcome: .succeeded, derivations: ["/nix/store/aaaa-a_1.drv"], duration: .seconds(1), built: ["/nix/store/dep%.drv"]),
                details: nil, at: now)
            let all = try await store.jobHistory(JobHistoryQuery())
            #expect(all.map(\.job.name) == ["b", "a"] && all.allSatisfy { $0.build.id == build })
            #expect(all.last?.job.tags == ["team": "platform"])
            // A top-level derivation, and one the job built; LIKE's wildcards match only themselves.
            #expect(try await store.jobHistory(JobHistoryQuery(derivation: "/nix/store/aaaa-a_1.drv")).map(\.job.name) == ["a"])
            #expect(try await store.jobHistory(JobHistoryQuery(derivation: "/nix/store/dep%.drv")).map(\.job.name) == ["a"])
            #expect(try await store.jobHistory(JobHistoryQuery(derivation: "/nix/store/aaaa-a%1.drv")).isEmpty)
            #expect(try await store.jobHistory(JobHistoryQuery(states: [.queued])).map(\.job.name) == ["b"])
            #expect(try await store.jobHistory(JobHistoryQuery(queuedFrom: now.addingTimeInterval(1))).isEmpty)
            #expect(try await store.jobHistory(JobHistoryQuery(queuedTo: now.addingTimeInterval(1))).count == 2)
            let newest = try #require(all.first?.job.id)
            #expect(try await store.jobHistory(JobHistoryQuery(before: newest, limit: 5)).map(\.job.name) == ["a"])
            #expect(try await store.jobHistory(JobHistoryQuery(limit: 1)).count == 1)
        }
    }

    @Test(arguments: Backend.allCases)
    func cancellingEndsWaitingWorkAndNamesRunningJobs(backend: Backend) async throws {
        try await withStore(backend) { store, repository in
            let build = try await store.accept(delivery("d1", repository), at: now).buildID
            _ = try await store.claimBuildToPlan()
            try await store.finishPlanning(build, .planned([Self.jobs[0], PlannedJob(
                name: "c", target: .installables([".#c"]), needs: [], timeout: .seconds(60), maxSilent: .seconds(60))]),
                resolution: nil, at: now)
            let running = try #require(try await store.claimRunnableJob(at: now, freeMemory: .max))
            #expect(try await store.cancel([build], .requested, at: now) == [running.job.id])
            let details = try #require(try await store.buildDetails(build))
            #expect(details.build.state == .running, "the build ends with its running job")
            #expect(details.jobs.map(\.state).sorted { $0.rawValue < $1.rawValue } == [.cancelled, .running])
            let ended = try await store.finishJob(running.job.id, JobReport(outcome: .cancelled(.requested), duration: .zero), details: nil, at: now)
            #expect(ended.state == .cancelled)
        }
    }

    @Test(arguments: Backend.allCases)
    func theEventLogResumesWithoutGapsAndPrunes(backend: Backend) async throws {
        try await withStore(backend) { store, _ in
            let events = (0..<5).map { KilnEvent(type: "job.progress", buildID: 1, repository: "octo/hello", fields: ["done": $0]) }
            try await store.appendEvents(events, at: now)
            let all = try await store.events(after: 0, filter: EventQuery(), limit: 100)
            #expect(all.count == 5 && zip(all, all.dropFirst()).allSatisfy { $0.id < $1.id })
            #expect(try await store.events(after: all[1].id, filter: EventQuery(), limit: 100).map(\.id) == all.dropFirst(2).map(\.id))
            #expect(try await store.events(after: 0, filter: EventQuery(types: ["build.queued"]), limit: 100).isEmpty)
            try await store.pruneEvents(olderThan: now.addingTimeInterval(-1), keep: 2)
            #expect(try await store.eventRange() == all[3].id...all[4].id)
        }
    }

    /// Deliveries that arrive together are committed together: each id makes one build, however
    /// often and however close together it is delivered, and each build is announced once.
    @Test(arguments: Backend.allCases)
    func deliveriesArrivingTogetherEachMakeOneBuild(backend: Backend) async throws {
        try await withStore(backend) { store, repository in
            let earlier = try await store.accept(delivery("early", repository), at: now)
            let answers = try await withThrowingTaskGroup(of: (String, BuildID, Bool).self) { group in
                for round in 0..<3 {
                    for index in 0..<40 {
                        group.addTask {
                            let id = index == 0 && round == 0 ? "early" : "c\(index)"
                            let answer = try await store.accept(delivery(id, repository), at: now)
                            return (id, answer.buildID, answer.isNew)
                        }
                    }
                }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            let byID = Dictionary(grouping: answers, by: \.0)
            #expect(byID.count == 41)
            for (id, given) in byID {
                #expect(Set(given.map(\.1)).count == 1, "\(id) got several builds")
                #expect(given.filter(\.2).count == (id == "early" ? 0 : 1), "\(id)")
            }
            #expect(byID["early"]?.allSatisfy { $0.1 == earlier.buildID } == true)
            #expect(Set(byID.values.map { $0[0].1 }).count == 41)
            let queued = try await store.events(after: 0, filter: EventQuery(), limit: 100).filter { $0.event.type == "build.queued" }
            #expect(queued.count == 41)
        }
    }

    /// One batch, as group commit writes it: a delivery named twice, one already recorded and
    /// new ones, in a statement per table.
    @Test(arguments: [Backend.file, .postgres])
    func aBatchNamesEachBuildOnce(backend: Backend) async throws {
        try await withStore(backend) { store, repository in
            let sql = try #require(store as? SQLStore)
            let recorded = try await store.accept(delivery("recorded", repository), at: now)
            let batch = ["a", "recorded", "b", "a", "c"].map { (delivery: delivery($0, repository), now: now) }
            let answers = try await sql.database.write { db in try SQLStore.insert(batch, db) }
            #expect(answers.map(\.isNew) == [true, false, true, false, true])
            #expect(answers[1].buildID == recorded.buildID && answers[0].buildID == answers[3].buildID)
            #expect(Set([answers[0].buildID, answers[2].buildID, answers[4].buildID, recorded.buildID]).count == 4)
            #expect(answers[0].buildID > recorded.buildID && answers[0].buildID < answers[2].buildID && answers[2].buildID < answers[4].buildID)
            // The next build's id follows, as AUTOINCREMENT and the sequence would have it.
            let next = try await store.accept(delivery("next", repository), at: now)
            #expect(next.buildID == answers[4].buildID + 1)
            for answer in answers { #expect(try await store.buildDetails(answer.buildID)?.build.state == .queued) }
            // One build, delivery and event for each delivery id: the redelivery in the batch made none.
            let counts = try await sql.database.read { db in
                [try db.value(Int.self, "SELECT COUNT(*) FROM builds"), try db.value(Int.self, "SELECT COUNT(*) FROM events WHERE build_id IS NOT NULL"),
                 try db.value(Int.self, "SELECT COUNT(*) FROM deliveries")]
            }
            #expect(counts == [5, 5, 5])
        }
    }

    @Test func batchesAreWrittenInPowersOfTwo() {
        #expect(SQLStore.chunkSizes(0) == [] && SQLStore.chunkSizes(1) == [1] && SQLStore.chunkSizes(11) == [8, 2, 1])
        #expect(SQLStore.chunkSizes(200) == [64, 64, 64, 8])
    }
}
