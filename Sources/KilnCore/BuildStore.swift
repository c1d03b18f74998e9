import Foundation
import KilnPipeline

/// A webhook delivery to record, with the build it asks for.
public struct NewDelivery: Sendable, Hashable {
    /// Forge name from the configuration.
    public var forge: String
    /// The forge's delivery id; unique per forge.
    public var deliveryID: String
    /// The configured repository.
    public var repositoryID: RepositoryID
    /// `owner/name`, as the configuration spells it.
    public var repository: String
    /// The pushed ref; for pull requests, the source branch.
    public var ref: GitRef
    /// The commit to build (for pull requests, the head; possibly a prefix until fetched).
    public var sha: String
    /// The ref's previous commit, for changed files; nil when unknown.
    public var before: String?
    /// The pull request, for pull request builds.
    public var pullRequest: PullRequestInfo?
    /// For an ad-hoc build: what it builds (no `.kiln.yml` is read).
    public var adHoc: AdHocPlan?
    /// The service an ad-hoc build is for (`service` in the request), for statistics.
    public var service: String?
    /// Queued by the reconciler: the forge's webhook never arrived.
    public var reconciled = false

    /// Creates a delivery.
    public init(
        forge: String, deliveryID: String, repositoryID: RepositoryID, repository: String, ref: GitRef, sha: String,
        before: String? = nil, pullRequest: PullRequestInfo? = nil
    ) {
        self.forge = forge
        self.deliveryID = deliveryID
        self.repositoryID = repositoryID
        self.repository = repository
        self.ref = ref
        self.sha = sha
        self.before = before
        self.pullRequest = pullRequest
    }
}

/// What the worker learned about a build's commits while planning it.
public struct BuildResolution: Sendable, Hashable {
    /// The full head commit (Bitbucket Cloud sends only a prefix).
    public var sha: String
    /// The commit checked out for jobs: a merge commit for pull requests built merged.
    public var builtSHA: String
    /// Whether the build may use its own pipeline file and the cache.
    public var trusted: Bool
    /// The tree the build builds, with the pipeline file's digest: builds with the same key
    /// share their result.
    public var treeKey: String?
    /// The first line of the head commit's message, when it was read.
    public var title: String?

    /// Creates a resolution.
    public init(sha: String, builtSHA: String, trusted: Bool, treeKey: String?, title: String? = nil) {
        self.sha = sha
        self.builtSHA = builtSHA
        self.trusted = trusted
        self.treeKey = treeKey
        self.title = title
    }

    /// A commit message's first line, at most 200 characters: what pages show of a commit.
    public static func title(of message: String) -> String {
        let line = message.split(separator: "\n", maxSplits: 1, omittingEmptySubsequences: true).first.map(String.init) ?? ""
        let trimmed = line.trimmingCharacters(in: .whitespaces)
        return trimmed.count > 200 ? String(trimmed.prefix(199)) + "…" : trimmed
    }
}

/// How planning a build ended.
public enum PlanningResult: Sendable, Hashable {
    /// These jobs were queued.
    case planned([PlannedJob])
    /// A re-run of what did not succeed in build `of`: jobs that succeeded there keep their
    /// result; the others are queued.
    case rerunFailed([PlannedJob], of: BuildID)
    /// An identical earlier build (same tree and pipeline file) ended: its results are this build's.
    case reused(BuildID)
    /// Nothing to build: the build ends skipped. With `announce` (`[skip ci]`) one final
    /// `kiln` status says so; without (the `on` filters exclude the event) nothing is posted.
    case skipped(reason: String, announce: Bool)
    /// A fork's pull request waits for an administrator; one pending `kiln` status says so.
    case awaitingApproval(reason: String)
    /// The pipeline file is missing or invalid, or the merge conflicts: one final failure
    /// status, no jobs.
    case invalid(summary: String, diagnostics: [String])
    /// Kiln could not fetch or read the commit: one final error status, no jobs.
    case errored(String)
}

/// A job handed to a worker, with what it needs to run.
public struct ClaimedJob: Sendable, Hashable {
    /// The job, now running.
    public var job: JobRecord
    /// Its build.
    public var build: BuildRecord

    /// Creates a claimed job.
    public init(job: JobRecord, build: BuildRecord) {
        self.job = job
        self.build = build
    }
}

/// A build with its jobs and statuses, for pages and the API.
public struct BuildDetails: Sendable, Hashable {
    /// The build.
    public var build: BuildRecord
    /// Its jobs in id order.
    public var jobs: [JobRecord]
    /// Its statuses in the order they were enqueued.
    public var statuses: [OutboxEntry]

    /// Creates details.
    public init(build: BuildRecord, jobs: [JobRecord], statuses: [OutboxEntry]) {
        self.build = build
        self.jobs = jobs
        self.statuses = statuses
    }
}

/// What a status post came to.
public enum StatusDeliveryResult: Sendable, Hashable {
    /// The forge accepted it.
    case delivered
    /// Kept only in Kiln (`status-api: none`).
    case recorded
    /// Try again at `at`.
    case retry(at: Date, error: String)
    /// The forge refused it; stop.
    case dropped(error: String)
}

/// Which builds replace each other: later builds of the same branch, or of the same pull request.
public enum BuildKey: Sendable, Hashable {
    /// Pushes of this full ref.
    case ref(String)
    /// Builds of this pull request.
    case pullRequest(Int)

    /// The key of a build.
    public init(_ build: BuildRecord) {
        self = build.pullRequest.map { .pullRequest($0.number) } ?? .ref(build.ref)
    }
}

/// What an approval came to.
public enum ApprovalResult: Sendable, Hashable {
    /// Approved; the build is queued again and builds.
    case approved(BuildRecord)
    /// No such build.
    case notFound
    /// The build is not waiting for approval (it is in this state).
    case notAwaiting(BuildState)
    /// The build waits for a different head commit than the one approved.
    case differentCommit(current: String)
}

/// Who claims work through a store: one Kiln instance (a fresh owner each start), and how long
/// its claims last unless it renews them. Another instance takes over a claim that lapsed.
public struct Lease: Sendable, Hashable {
    /// The instance's name in `owner` columns.
    public var owner: String
    /// How long a claim holds without renewal.
    public var duration: TimeInterval

    /// A lease for a new instance.
    public init(owner: String = "kiln-" + UUID().uuidString.prefix(8).lowercased(), duration: TimeInterval = 30) {
        self.owner = owner
        self.duration = duration
    }
}

/// A build and its jobs, as one transaction read them.
public struct BuildSnapshot: Sendable, Hashable {
    /// The build.
    public var build: BuildRecord
    /// Its jobs in id order.
    public var jobs: [JobRecord]

    /// Creates a snapshot.
    public init(build: BuildRecord, jobs: [JobRecord]) {
        self.build = build
        self.jobs = jobs
    }
}

/// The life of builds and jobs, as intents: each method is one transaction that reads what a
/// decision needs, asks `decide` (the state machines, in `KilnCore`), and carries out the
/// actions it returns. The store decides nothing itself: no status text, no state mapping.
/// Safe to call concurrently; errors mean the database failed, outcomes are return values.
/// The lifecycle operations built on these are in `BuildStore+Lifecycle.swift`.
public protocol BuildStore: BuildQueries {
    /// Records the delivery and its queued build, or returns the build of an earlier
    /// delivery with the same id (`isNew` false) and changes nothing.
    func accept(_ delivery: NewDelivery, at now: Date) async throws -> (buildID: BuildID, isNew: Bool)

    /// Takes the oldest queued build of a repository not in `busy`, carries out `decide`'s actions
    /// on it and returns it as it then stands; nil when none waits.
    func claimBuild(
        excluding busy: Set<RepositoryID>, at now: Date, _ decide: @Sendable (BuildRecord) -> [BuildStateMachine.Action]
    ) async throws -> BuildRecord?

    /// Offers each running build with queued jobs, oldest first, to `decide` until it starts one
    /// (a `startJob` action); carries out its actions and returns that job. Nil when none starts.
    func claimJob(at now: Date, _ decide: @Sendable (BuildSnapshot) -> [BuildStateMachine.Action]) async throws
        -> ClaimedJob?

    /// Reads build `id` (and `earlier`, when given and present), carries out the actions `decide`
    /// returns, and returns the build as it then stands with `decide`'s decision; nil when there
    /// is no such build.
    func change<Decision: Sendable>(
        _ id: BuildID, reading earlier: BuildID?, at now: Date,
        _ decide: @Sendable (BuildSnapshot, BuildSnapshot?) -> (actions: [BuildStateMachine.Action], decision: Decision)
    ) async throws -> (build: BuildRecord, decision: Decision)?

    /// This store's instance: the owner its claims record, and how long a claim holds unrenewed.
    var lease: Lease { get }

    /// Extends this instance's leases on its planning builds and running jobs to `now` plus the
    /// lease's length. Returns the running jobs it still holds, each with its build's cancel
    /// summary (nil when the build is not cancelled): a job missing here was taken over.
    func renewLeases(at now: Date) async throws -> [JobID: String?]

    /// Builds that were planning or running, oldest first: what a restart interrupted.
    func underWay() async throws -> [BuildID]

    /// The derivations of the jobs of the newest other build of the same tree and pipeline
    /// file that recorded any, by job name, with that build's id; nil when none did.
    func recordedDerivations(sameTreeAs buildID: BuildID) async throws -> (build: BuildID, derivations: [String: [String]])?

    /// Work that should have ended: jobs running longer than their timeout plus `jobGrace`
    /// seconds, builds planning for longer than `planningLimit` seconds.
    func overdue(at now: Date, jobGrace: TimeInterval, planningLimit: TimeInterval) async throws
        -> (jobs: [JobID], builds: [BuildID])

    /// Deletes builds that ended before `date`, with their jobs, deliveries and statuses.
    /// Returns how many builds went, and the deleted jobs' ids, whose logs the caller removes.
    func removeBuilds(endedBefore date: Date) async throws -> (builds: Int, jobs: [JobID])
}

/// Decisions across builds: superseding, cancelling, approving, running again.
public protocol BuildControl: Sendable {
    /// Unfinished builds of `key` in the repository, older than `build`.
    func unfinishedBuilds(_ key: BuildKey, repository: RepositoryID, olderThan build: BuildID) async throws -> [BuildRecord]

    /// Whether any build, of any outcome, of commit `sha` exists in the repository: of pull
    /// request `pullRequest`, or when nil a push of `ref`. A prefix (Bitbucket Cloud's) matches
    /// the full id and the other way round.
    func hasBuild(sha: String, ref: String?, pullRequest: Int?, repository: RepositoryID) async throws -> Bool

    /// The head commit of the newest build of a pull request, if any.
    func latestHead(pullRequest number: Int, repository: RepositoryID) async throws -> String?

    /// Whether the head commit `sha` of a pull request was approved.
    func isApproved(pullRequest number: Int, sha: String, repository: RepositoryID) async throws -> Bool

    /// The build waiting for approval of commit `sha`, if one does.
    func awaitingApproval(sha: String, repository: RepositoryID) async throws -> BuildID?

    /// A new queued build of `build` (when given; else of the newest build of commit `sha`), as a re-run, with the summary
    /// `summary` gives for the original; nil when Kiln never built it. Idempotent on the
    /// delivery id like `accept`.
    func rerun(
        sha: String, of build: BuildID?, repository: RepositoryID, forge: String, deliveryID: String, failedOnly: Bool, at now: Date,
        summary: @Sendable (BuildID) -> String
    ) async throws -> (buildID: BuildID, isNew: Bool)?

    /// A finished (succeeded or failed) build with this tree key whose results can be reused.
    func reusableBuild(treeKey: String, repository: RepositoryID, excluding build: BuildID, trustedOnly: Bool) async throws
        -> BuildID?
}

/// The outbox of commit statuses.
public protocol StatusOutbox: Sendable {
    /// Pending status entries due at `now`, oldest first, at most `limit`; and the time the
    /// next not-yet-due entry becomes due.
    func dueStatuses(at now: Date, limit: Int) async throws -> (due: [OutboxEntry], nextDue: Date?)

    /// Records what posting an entry came to.
    func recordStatusDelivery(_ entryID: Int64, _ result: StatusDeliveryResult, at now: Date) async throws

    /// Ends the claims on entries being posted whose lease ends before `cutoff` (all of them, at
    /// the start of the one instance of a database: whoever held them is gone).
    func releaseStatusClaims(endedBy cutoff: Date) async throws
}

/// Reading builds for pages and the API.
public protocol BuildQueries: Sendable {
    /// A build with its jobs and statuses; nil when there is no such build.
    func buildDetails(_ id: BuildID) async throws -> BuildDetails?

    /// A job; nil when there is no such job.
    func job(_ id: JobID) async throws -> JobRecord?

    /// The newest builds, newest first.
    func recentBuilds(limit: Int) async throws -> [BuildRecord]

    /// What waits and runs now, for metrics.
    func queueStats() async throws -> QueueStats

    /// Figures of the builds (of one repository or service, or all) that ended at or after `since`.
    func buildStatistics(repository: String?, service: String?, since: Date) async throws -> BuildStatistics

    /// Jobs that pass `query`, newest first, each with its build.
    func jobHistory(_ query: JobHistoryQuery) async throws -> [(job: JobRecord, build: BuildRecord)]

    /// Builds that pass `query`, newest first.
    func builds(_ query: BuildListQuery) async throws -> [BuildRecord]

    /// The newest push build of each ref of a repository (by forge and name), by ref; pull
    /// request builds are not a ref's.
    func branches(forge: String, repository: String) async throws -> [BuildRecord]
}

/// Which builds to list: filters, and a cursor for the next page.
public struct BuildListQuery: Sendable, Hashable {
    /// Only this forge's (by its configured name).
    public var forge: String?
    /// Only this repository's (`owner/name`).
    public var repository: String?
    /// Only pushes of this branch (pull request builds never count: a fork's branch may share
    /// the name).
    public var branch: String?
    /// Only builds in this state.
    public var state: BuildState?
    /// Only builds older than this one: the cursor.
    public var before: BuildID?
    /// At most this many.
    public var limit: Int

    /// Creates a query.
    public init(
        forge: String? = nil, repository: String? = nil, branch: String? = nil, state: BuildState? = nil, before: BuildID? = nil,
        limit: Int = 50
    ) {
        self.forge = forge
        self.repository = repository
        self.branch = branch
        self.state = state
        self.before = before
        self.limit = limit
    }

    /// Whether `build` passes the filters (not the cursor or the limit).
    public func matches(_ build: BuildRecord) -> Bool {
        (forge.map { $0 == build.forge } ?? true) && (repository.map { $0 == build.repository } ?? true)
            && (branch.map { "refs/heads/\($0)" == build.ref && build.pullRequest == nil } ?? true) && (state.map { $0 == build.state } ?? true)
    }
}

/// What the builds that ended in a window came to (`GET /api/v1/statistics`).
public struct BuildStatistics: Sendable, Hashable {
    /// Builds that ended, by final state.
    public var builds: [BuildState: Int] = [:]
    /// Their mean time from start (or creation) to end, in seconds.
    public var averageBuildSeconds: Double?
    /// Outputs of their succeeded jobs: how many, and their NAR sizes together.
    public var outputs = 0
    public var outputBytes: Int64 = 0
    /// Seconds their jobs ran, together (for worker utilisation).
    public var jobSeconds: Double = 0
    /// What their jobs did with the store.
    public var activity = CacheActivity()

    /// Creates figures.
    public init() {}

    /// Succeeded over succeeded, failed and errored; nil when none of those ended.
    public var successRate: Double? {
        let succeeded = builds[.succeeded] ?? 0
        let decided = succeeded + (builds[.failed] ?? 0) + (builds[.errored] ?? 0)
        return decided == 0 ? nil : Double(succeeded) / Double(decided)
    }

    /// The mean NAR size of an output.
    public var averageOutputBytes: Double? { outputs == 0 ? nil : Double(outputBytes) / Double(outputs) }
}

/// Which jobs to list as build records.
public struct JobHistoryQuery: Sendable, Hashable {
    /// Only jobs whose derivations (top-level or built) include this one.
    public var derivation: String?
    /// Only jobs in these states.
    public var states: Set<JobState>?
    /// Only jobs first queued at or after this.
    public var queuedFrom: Date?
    /// Only jobs first queued before this.
    public var queuedTo: Date?
    /// Only jobs older than this one: the cursor.
    public var before: JobID?
    /// At most this many.
    public var limit: Int

    /// Creates a query.
    public init(
        derivation: String? = nil, states: Set<JobState>? = nil, queuedFrom: Date? = nil, queuedTo: Date? = nil, before: JobID? = nil,
        limit: Int = 100
    ) {
        self.derivation = derivation
        self.states = states
        self.queuedFrom = queuedFrom
        self.queuedTo = queuedTo
        self.before = before
        self.limit = limit
    }

    /// Whether `job` passes the filters (not the cursor or the limit).
    public func matches(_ job: JobRecord) -> Bool {
        (derivation.map { job.derivations.contains($0) || job.built.contains($0) } ?? true)
            && (states.map { $0.contains(job.state) } ?? true) && (queuedFrom.map { job.queuedAt >= $0 } ?? true)
            && (queuedTo.map { job.queuedAt < $0 } ?? true)
    }
}

/// What jobs did with the store and the binary cache over a window.
public struct CacheActivity: Sendable, Hashable {
    /// Jobs that ran and ended.
    public var jobs: Int = 0
    /// Derivations their nix built.
    public var built: Int = 0
    /// Derivations another job built while they waited.
    public var waitedFor: Int = 0
    /// Store paths fetched from a substituter.
    public var substituted: Int = 0
    /// Derivations of succeeded jobs already valid in the store.
    public var alreadyValid: Int = 0
    /// Binary cache pushes that succeeded.
    public var pushes: Int = 0
    /// NAR bytes of the closures they pushed (nix copy skips what the cache has: an upper bound).
    public var pushedBytes: Int64 = 0

    /// Creates figures.
    public init(
        jobs: Int = 0, built: Int = 0, waitedFor: Int = 0, substituted: Int = 0, alreadyValid: Int = 0, pushes: Int = 0,
        pushedBytes: Int64 = 0
    ) {
        self.jobs = jobs
        self.built = built
        self.waitedFor = waitedFor
        self.substituted = substituted
        self.alreadyValid = alreadyValid
        self.pushes = pushes
        self.pushedBytes = pushedBytes
    }

    /// The share of needed store paths that were not built here: substituted or already valid.
    public var hitRate: Double? {
        let total = built + substituted + alreadyValid
        return total == 0 ? nil : Double(substituted + alreadyValid) / Double(total)
    }
}

/// What waits and runs at one moment.
public struct QueueStats: Sendable, Hashable {
    /// Builds queued for planning.
    public var queuedBuilds: Int
    /// When the oldest of them was queued.
    public var oldestQueuedBuild: Date?
    /// Jobs queued.
    public var queuedJobs: Int
    /// When the oldest of them was queued.
    public var oldestQueuedJob: Date?
    /// Jobs running.
    public var runningJobs: Int
    /// Statuses waiting to be posted.
    public var pendingStatuses: Int

    /// Creates figures.
    public init(
        queuedBuilds: Int, oldestQueuedBuild: Date?, queuedJobs: Int, oldestQueuedJob: Date?, runningJobs: Int, pendingStatuses: Int
    ) {
        self.queuedBuilds = queuedBuilds
        self.oldestQueuedBuild = oldestQueuedBuild
        self.queuedJobs = queuedJobs
        self.oldestQueuedJob = oldestQueuedJob
        self.runningJobs = runningJobs
        self.pendingStatuses = pendingStatuses
    }
}

/// Everything the server needs from its database.
public typealias KilnStore = BuildStore & BuildControl & StatusOutbox & BuildQueries & EventLog
