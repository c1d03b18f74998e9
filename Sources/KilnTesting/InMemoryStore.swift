import Foundation
import KilnCore
import KilnPipeline
import Synchronization

/// A hand-written `KilnStore` in memory, for coordinator tests that need no database: the
/// store contract suite holds it to what SQLite does. Each method is atomic under one lock.
public final class InMemoryStore: KilnStore, TokenStore {
    struct State {
        var repositories: [String] = []
        var builds: [BuildID: BuildRecord] = [:]
        var jobs: [JobID: JobRecord] = [:]
        var outbox: [OutboxEntry] = []
        /// Until when each claimed status entry is being posted.
        var outboxLeases: [Int64: Date] = [:]
        var events: [StoredEvent] = []
        var eventTimes: [Int64: Date] = [:]
        var deliveries: [String: BuildID] = [:]
        var approvals: Set<String> = []
        var treeKeys: [BuildID: String] = [:]
        var planningSince: [BuildID: Date] = [:]
        var reusedFrom: [BuildID: BuildID] = [:]
        var nextID: Int64 = 1
        var tokens: [(token: APIToken, digest: [UInt8])] = []
        var nextEventID: Int64 = 1

        mutating func newID() -> Int64 {
            defer { nextID += 1 }
            return nextID
        }

        func snapshot(_ id: BuildID) -> BuildSnapshot? {
            guard let build = builds[id] else { return nil }
            return BuildSnapshot(build: build, jobs: jobs.values.filter { $0.buildID == id }.sorted { $0.id < $1.id })
        }
    }

    private let state = Mutex(State())

    /// An empty store.
    /// This instance's claims.
    public let lease: Lease

    /// An empty store, claiming as `lease` says.
    public init(lease: Lease = Lease()) { self.lease = lease }

    public func renewLeases(at now: Date) async throws -> [JobID: String?] {
        state.withLock { state in
            let until = now.addingTimeInterval(lease.duration)
            for (id, build) in state.builds where build.owner == lease.owner && build.state == .planning {
                state.builds[id]?.leaseUntil = until
            }
            var held: [JobID: String?] = [:]
            for (id, job) in state.jobs where job.owner == lease.owner && job.state == .running {
                state.jobs[id]?.leaseUntil = until
                held[id] = state.builds[job.buildID]?.cancelReason
            }
            return held
        }
    }

    /// The id of a repository, added on first use (as `SQLStore.syncRepositories` does).
    public func repository(forge: String, name: String) -> RepositoryID {
        state.withLock { state in
            let key = "\(forge)\n\(name)"
            if let index = state.repositories.firstIndex(of: key) { return RepositoryID(index + 1) }
            state.repositories.append(key)
            return RepositoryID(state.repositories.count)
        }
    }

    // MARK: BuildStore

    public func accept(_ delivery: NewDelivery, at now: Date) async throws -> (buildID: BuildID, isNew: Bool) {
        state.withLock { state in
            let key = "\(delivery.forge)\n\(delivery.deliveryID)"
            if let existing = state.deliveries[key] { return (existing, false) }
            let id = state.newID()
            state.builds[id] = BuildRecord(
                id: id, repositoryID: delivery.repositoryID, forge: delivery.forge, repository: delivery.repository, sha: delivery.sha,
                ref: delivery.ref.fullName, state: .queued, summary: BuildStateMachine.acceptedSummary, createdAt: now,
                beforeSHA: delivery.before, pullRequest: delivery.pullRequest)
            state.builds[id]?.adHoc = delivery.adHoc
            state.builds[id]?.service = delivery.service
            state.builds[id]?.reconciled = delivery.reconciled
            state.deliveries[key] = id
            Self.append([BuildEvents.queued(id, delivery)], at: now, &state)
            return (id, true)
        }
    }

    public func claimBuild(
        excluding busy: Set<RepositoryID>, at now: Date, _ decide: @Sendable (BuildRecord) -> [BuildStateMachine.Action]
    ) async throws -> BuildRecord? {
        state.withLock { state in
            guard let build = state.builds.values.filter({ $0.state == .queued && !busy.contains($0.repositoryID) })
                .min(by: { $0.id < $1.id })
            else { return nil }
            Self.apply(decide(build), to: build, at: now, lease: lease, &state)
            return state.builds[build.id]
        }
    }

    public func claimJob(at now: Date, _ decide: @Sendable (BuildSnapshot) -> [BuildStateMachine.Action]) async throws
        -> ClaimedJob?
    {
        state.withLock { state in
            let candidates = Set(state.jobs.values.filter { $0.state == .queued }.map(\.buildID))
                .filter { state.builds[$0]?.state == .running }.sorted()
            for id in candidates {
                guard let snapshot = state.snapshot(id) else { continue }
                let actions = decide(snapshot)
                guard let started = BuildStateMachine.startedJob(actions) else { continue }
                Self.apply(actions, to: snapshot.build, at: now, lease: lease, &state)
                return ClaimedJob(job: state.jobs[started]!, build: state.builds[id]!)
            }
            return nil
        }
    }

    public func change<Decision: Sendable>(
        _ id: BuildID, reading earlier: BuildID?, at now: Date,
        _ decide: @Sendable (BuildSnapshot, BuildSnapshot?) -> (actions: [BuildStateMachine.Action], decision: Decision)
    ) async throws -> (build: BuildRecord, decision: Decision)? {
        state.withLock { state in
            guard let snapshot = state.snapshot(id) else { return nil }
            let (actions, decision) = decide(snapshot, earlier.flatMap { state.snapshot($0) })
            Self.apply(actions, to: snapshot.build, at: now, lease: lease, &state)
            return (state.builds[id]!, decision)
        }
    }

    public func underWay() async throws -> [BuildID] {
        state.withLock { $0.builds.values.filter { $0.state == .planning || $0.state == .running }.map(\.id).sorted() }
    }

    public func recordedDerivations(sameTreeAs buildID: BuildID) async throws
        -> (build: BuildID, derivations: [String: [String]])?
    {
        state.withLock { state in
            guard let this = state.builds[buildID], let key = state.treeKeys[buildID] else { return nil }
            let earlier = state.builds.values.filter { other in
                other.id != buildID && other.repositoryID == this.repositoryID && state.treeKeys[other.id] == key
                    && state.jobs.values.contains { $0.buildID == other.id && !$0.derivations.isEmpty }
            }.max { $0.id < $1.id }
            guard let earlier else { return nil }
            var derivations: [String: [String]] = [:]
            for job in state.jobs.values where job.buildID == earlier.id && !job.derivations.isEmpty {
                derivations[job.name] = job.derivations
            }
            return (earlier.id, derivations)
        }
    }

    public func overdue(at now: Date, jobGrace: TimeInterval, planningLimit: TimeInterval) async throws
        -> (jobs: [JobID], builds: [BuildID])
    {
        state.withLock { state in
            let jobs = state.jobs.values.filter { job in
                guard job.state == .running, let started = job.startedAt else { return false }
                return started.addingTimeInterval(Double(job.timeout.components.seconds) + jobGrace) < now
            }.map(\.id).sorted()
            let builds = state.builds.values.filter { build in
                guard build.state == .planning, let since = state.planningSince[build.id] else { return false }
                return since.addingTimeInterval(planningLimit) < now
            }.map(\.id).sorted()
            return (jobs, builds)
        }
    }

    public func removeBuilds(endedBefore date: Date) async throws -> (builds: Int, jobs: [JobID]) {
        state.withLock { state in
            // The newest build of each branch and pull request stays.
            let newest = Set(
                Dictionary(grouping: state.builds.values.filter { $0.adHoc == nil }) {
                    "\($0.repositoryID)\n\($0.ref)\n\($0.pullRequest?.number ?? 0)"
                }.values.compactMap { $0.map(\.id).max() })
            let old = Set(
                state.builds.values.filter { ($0.finishedAt ?? .distantFuture) < date && !newest.contains($0.id) }.map(\.id))
            let jobs = state.jobs.values.filter { old.contains($0.buildID) }.map(\.id).sorted()
            for job in jobs { state.jobs[job] = nil }
            state.outbox.removeAll { old.contains($0.buildID) }
            state.deliveries = state.deliveries.filter { !old.contains($0.value) }
            for id in old { state.builds[id] = nil }
            for (id, build) in state.builds where build.rerunOf.map(old.contains) == true { state.builds[id]?.rerunOf = nil }
            state.reusedFrom = state.reusedFrom.filter { !old.contains($0.value) && !old.contains($0.key) }
            return (old.count, jobs)
        }
    }

    // MARK: BuildQueries

    public func buildDetails(_ id: BuildID) async throws -> BuildDetails? {
        state.withLock { state in
            state.snapshot(id).map { snapshot in
                BuildDetails(build: snapshot.build, jobs: snapshot.jobs, statuses: state.outbox.filter { $0.buildID == id })
            }
        }
    }

    public func job(_ id: JobID) async throws -> JobRecord? { state.withLock { $0.jobs[id] } }

    public func recentBuilds(limit: Int) async throws -> [BuildRecord] {
        state.withLock { Array($0.builds.values.sorted { $0.id > $1.id }.prefix(limit)) }
    }

    public func queueStats() async throws -> QueueStats {
        state.withLock { state in
            let builds = state.builds.values.filter { $0.state == .queued }
            let jobs = state.jobs.values.filter { $0.state == .queued }
            return QueueStats(
                queuedBuilds: builds.count, oldestQueuedBuild: builds.map(\.createdAt).min(), queuedJobs: jobs.count,
                oldestQueuedJob: jobs.map(\.queuedAt).min(), runningJobs: state.jobs.values.filter { $0.state == .running }.count,
                pendingStatuses: state.outbox.filter { $0.delivery == .pending }.count)
        }
    }

    public func buildStatistics(repository: String?, service: String?, since: Date) async throws -> BuildStatistics {
        state.withLock { state in
            var statistics = BuildStatistics()
            let builds = state.builds.values.filter { build in
                (build.finishedAt.map { $0 >= since } ?? false) && (repository.map { $0 == build.repository } ?? true)
                    && (service.map { $0 == build.service } ?? true)
            }
            var seconds = 0.0
            for build in builds {
                statistics.builds[build.state, default: 0] += 1
                seconds += build.finishedAt!.timeIntervalSince(build.startedAt ?? build.createdAt)
            }
            statistics.averageBuildSeconds = builds.isEmpty ? nil : seconds / Double(builds.count)
            let ids = Set(builds.map(\.id))
            for job in state.jobs.values where ids.contains(job.buildID) && job.attempt > 0 {
                guard let started = job.startedAt, let finished = job.finishedAt else { continue }
                statistics.jobSeconds += finished.timeIntervalSince(started)
                statistics.activity.jobs += 1
                statistics.activity.built += job.built.count
                statistics.activity.waitedFor += job.waitedFor.count
                statistics.activity.substituted += job.substituted
                if job.state == .succeeded {
                    statistics.outputs += job.outputs.count
                    statistics.outputBytes += job.outputs.reduce(0) { $0 + ($1.narSize ?? 0) }
                    statistics.activity.alreadyValid += max(0, job.derivations.count - job.built.count - job.waitedFor.count)
                }
                if let bytes = job.cachePushedBytes {
                    statistics.activity.pushes += 1
                    statistics.activity.pushedBytes += bytes
                }
            }
            return statistics
        }
    }

    public func jobHistory(_ query: JobHistoryQuery) async throws -> [(job: JobRecord, build: BuildRecord)] {
        state.withLock { state in
            let jobs = state.jobs.values.filter { job in query.matches(job) && query.before.map { job.id < $0 } != false }
                .sorted { $0.id > $1.id }.prefix(max(1, query.limit))
            return jobs.compactMap { job in state.builds[job.buildID].map { (job, $0) } }
        }
    }

    public func builds(_ query: BuildListQuery) async throws -> [BuildRecord] {
        state.withLock { state in
            Array(
                state.builds.values.filter { build in query.matches(build) && query.before.map { build.id < $0 } != false }
                    .sorted { $0.id > $1.id }.prefix(max(1, query.limit)))
        }
    }

    public func branches(forge: String, repository: String) async throws -> [BuildRecord] {
        state.withLock { state in
            let builds = state.builds.values.filter { $0.forge == forge && $0.repository == repository && $0.pullRequest == nil }
            return Dictionary(grouping: builds, by: \.ref).values.compactMap { $0.max { $0.id < $1.id } }.sorted { $0.ref < $1.ref }
        }
    }

    // MARK: BuildControl

    public func unfinishedBuilds(_ key: BuildKey, repository: RepositoryID, olderThan build: BuildID) async throws -> [BuildRecord] {
        state.withLock { state in
            state.builds.values.filter { other in
                guard other.repositoryID == repository, other.id < build, !other.state.isFinal else { return false }
                switch key {
                case .ref(let ref): return other.ref == ref && other.pullRequest == nil
                case .pullRequest(let number): return other.pullRequest?.number == number
                }
            }.sorted { $0.id < $1.id }
        }
    }

    public func hasBuild(sha: String, ref: String?, pullRequest: Int?, repository: RepositoryID) async throws -> Bool {
        state.withLock { state in
            state.builds.values.contains { build in
                build.repositoryID == repository && (build.sha.hasPrefix(sha) || sha.hasPrefix(build.sha))
                    && (pullRequest.map { build.pullRequest?.number == $0 } ?? (build.pullRequest == nil && build.ref == ref))
            }
        }
    }

    public func latestHead(pullRequest number: Int, repository: RepositoryID) async throws -> String? {
        state.withLock { state in
            state.builds.values.filter { $0.repositoryID == repository && $0.pullRequest?.number == number }.max { $0.id < $1.id }?.sha
        }
    }

    public func isApproved(pullRequest number: Int, sha: String, repository: RepositoryID) async throws -> Bool {
        state.withLock { $0.approvals.contains("\(repository)\n\(number)\n\(sha)") }
    }

    public func awaitingApproval(sha: String, repository: RepositoryID) async throws -> BuildID? {
        state.withLock { state in
            state.builds.values.filter { $0.repositoryID == repository && $0.sha == sha && $0.state == .awaitingApproval }
                .map(\.id).max()
        }
    }

    public func rerun(
        sha: String, of build: BuildID?, repository: RepositoryID, forge: String, deliveryID: String, failedOnly: Bool, at now: Date,
        summary: @Sendable (BuildID) -> String
    ) async throws -> (buildID: BuildID, isNew: Bool)? {
        state.withLock { state in
            let key = "\(forge)\n\(deliveryID)"
            if let existing = state.deliveries[key] { return (existing, false) }
            let chosen = build.flatMap { state.builds[$0] }.flatMap { $0.repositoryID == repository ? $0 : nil }
            guard let original = chosen ?? state.builds.values.filter({ $0.repositoryID == repository && $0.sha == sha }).max(by: { $0.id < $1.id })
            else { return nil }
            let id = state.newID()
            state.builds[id] = BuildRecord(
                id: id, repositoryID: original.repositoryID, forge: original.forge, repository: original.repository, sha: original.sha,
                ref: original.ref, state: .queued, summary: summary(original.id), createdAt: now, beforeSHA: original.beforeSHA,
                pullRequest: original.pullRequest, rerunOf: original.id)
            state.builds[id]?.rerunFailedOnly = failedOnly
            state.deliveries[key] = id
            return (id, true)
        }
    }

    public func reusableBuild(treeKey: String, repository: RepositoryID, excluding build: BuildID, trustedOnly: Bool) async throws
        -> BuildID?
    {
        state.withLock { state in
            state.builds.values.filter { other in
                other.repositoryID == repository && state.treeKeys[other.id] == treeKey && other.id != build
                    && (other.state == .succeeded || other.state == .failed) && (other.trusted || !trustedOnly)
            }.map(\.id).max()
        }
    }

    // MARK: StatusOutbox

    public func dueStatuses(at now: Date, limit: Int) async throws -> (due: [OutboxEntry], nextDue: Date?) {
        state.withLock { state in
            func key(_ entry: OutboxEntry) -> String { "\(entry.forge)\n\(entry.commit.repository)\n\(entry.commit.sha)\n\(entry.status.context)" }
            let posting = Set(state.outbox.filter { (state.outboxLeases[$0.id] ?? .distantPast) >= now }.map(key))
            let pending = state.outbox.filter { $0.delivery == .pending }
            let due = Array(
                pending.filter {
                    $0.nextAttemptAt <= now && (state.outboxLeases[$0.id] ?? .distantPast) < now && !posting.contains(key($0))
                }.prefix(limit))
            for entry in due { state.outboxLeases[entry.id] = now.addingTimeInterval(60) }
            let next = pending.map { max($0.nextAttemptAt, state.outboxLeases[$0.id] ?? .distantPast) }.filter { $0 > now }.min()
            return (due, next)
        }
    }

    public func releaseStatusClaims(endedBy cutoff: Date) async throws {
        state.withLock { state in state.outboxLeases = state.outboxLeases.filter { $0.value >= cutoff } }
    }

    public func recordStatusDelivery(_ entryID: Int64, _ result: StatusDeliveryResult, at now: Date) async throws {
        state.withLock { state in
            guard let index = state.outbox.firstIndex(where: { $0.id == entryID }) else { return }
            state.outboxLeases[entryID] = nil
            switch result {
            case .delivered, .recorded:
                state.outbox[index].delivery = result == .delivered ? .delivered : .recorded
                state.outbox[index].attempts += result == .delivered ? 1 : 0
                state.outbox[index].lastError = nil
            case .retry(let at, let error):
                guard state.outbox[index].delivery == .pending else { return }
                state.outbox[index].attempts += 1
                state.outbox[index].nextAttemptAt = at
                state.outbox[index].lastError = error
            case .dropped(let error):
                state.outbox[index].delivery = .dropped
                state.outbox[index].attempts += 1
                state.outbox[index].lastError = error
            }
        }
    }

    // MARK: TokenStore

    public func createToken(name: String, scope: TokenScope, digest: [UInt8], at now: Date) async throws -> APIToken {
        try state.withLock { state in
            if state.tokens.contains(where: { $0.token.name == name }) { throw TokenError.nameTaken(name) }
            let token = APIToken(id: state.newID(), name: name, scope: scope, createdAt: now)
            state.tokens.append((token, digest))
            return token
        }
    }

    public func tokens() async throws -> [APIToken] { state.withLock { $0.tokens.map(\.token) } }

    public func revokeToken(name: String, at now: Date) async throws {
        try state.withLock { state in
            guard let index = state.tokens.firstIndex(where: { $0.token.name == name }) else { throw TokenError.unknown(name) }
            state.tokens[index].token.revokedAt = state.tokens[index].token.revokedAt ?? now
        }
    }

    public func activeToken(_ id: Int64) async throws -> (name: String, scope: TokenScope, digest: [UInt8])? {
        state.withLock { state in
            state.tokens.first { $0.token.id == id && $0.token.revokedAt == nil }.map { ($0.token.name, $0.token.scope, $0.digest) }
        }
    }

    // MARK: EventLog

    public func appendEvents(_ events: [KilnEvent], at now: Date) async throws {
        state.withLock { Self.append(events, at: now, &$0) }
    }

    public func events(after id: Int64, filter: EventQuery, limit: Int) async throws -> [StoredEvent] {
        state.withLock { state in
            Array(
                state.events.filter { stored in
                    stored.id > id && filter.repository.map { $0 == stored.event.repository } != false
                        && filter.build.map { $0 == stored.event.buildID } != false
                        && filter.types.map { $0.contains(stored.event.type) } != false
                }.prefix(max(1, limit)))
        }
    }

    public func eventRange() async throws -> ClosedRange<Int64>? {
        state.withLock { state in
            guard let first = state.events.first, let last = state.events.last else { return nil }
            return first.id...last.id
        }
    }

    public func pruneEvents(olderThan date: Date, keep: Int) async throws {
        state.withLock { state in
            state.events.removeAll { state.eventTimes[$0.id]! < date }
            if state.events.count > keep { state.events.removeFirst(state.events.count - max(0, keep)) }
        }
    }

    private static func append(_ events: [KilnEvent], at now: Date, _ state: inout State) {
        for event in events {
            let id = state.nextEventID
            state.nextEventID += 1
            state.events.append(StoredEvent(id: id, event: event))
            state.eventTimes[id] = now
        }
    }
}
