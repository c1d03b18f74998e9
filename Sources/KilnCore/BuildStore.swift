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
    /// `owner/name`.
    public var repository: String
    /// The pushed ref.
    public var ref: GitRef
    /// The commit to build.
    public var sha: String
    /// The ref's previous commit, for changed files; nil when unknown.
    public var before: String?

    /// Creates a delivery.
    public init(
        forge: String, deliveryID: String, repositoryID: RepositoryID, repository: String, ref: GitRef, sha: String,
        before: String? = nil
    ) {
        self.forge = forge
        self.deliveryID = deliveryID
        self.repositoryID = repositoryID
        self.repository = repository
        self.ref = ref
        self.sha = sha
        self.before = before
    }
}

/// How planning a build ended.
public enum PlanningResult: Sendable, Hashable {
    /// These jobs were queued.
    case planned([PlannedJob])
    /// Nothing to build: the build ends skipped. With `announce` (`[skip ci]`) one final
    /// `kiln` status says so; without (the `on` filters exclude the event) nothing is posted.
    case skipped(reason: String, announce: Bool)
    /// The pipeline file is missing or invalid: one final failure status, no jobs.
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

/// Durable state: deliveries, builds, jobs and the status outbox.
///
/// Every method is one transaction and safe to call concurrently. Errors are
/// `StoreError` (the database failed); expected outcomes are return values.
public protocol BuildStore: Sendable {
    /// Records the delivery and its queued build, or returns the build of an earlier
    /// delivery with the same id (`isNew` false) and changes nothing.
    func accept(_ delivery: NewDelivery, at now: Date) async throws -> (buildID: BuildID, isNew: Bool)

    /// Moves the oldest queued build to planning and returns it; nil when none waits.
    func claimBuildToPlan() async throws -> BuildRecord?

    /// Ends planning: queues the jobs (or ends the build) and enqueues the statuses this implies.
    func finishPlanning(_ buildID: BuildID, _ result: PlanningResult, at now: Date) async throws

    /// Starts the oldest queued job whose needs are satisfied and whose `min-memory` fits in
    /// `freeMemory` bytes; nil when none can start.
    func claimRunnableJob(at now: Date, freeMemory: Int) async throws -> ClaimedJob?

    /// Records a job's end, skips what can no longer run, concludes the build if it is over,
    /// and enqueues the statuses. Returns the build as it now stands.
    func finishJob(_ jobID: JobID, _ report: JobReport, at now: Date) async throws -> BuildRecord

    /// After a restart: builds that were planning are queued again, running jobs are re-queued.
    /// Returns how many builds and jobs were recovered.
    func recoverInterrupted() async throws -> (builds: Int, jobs: Int)

    /// Pending status entries due at `now`, oldest first, at most `limit`; and the time the
    /// next not-yet-due entry becomes due.
    func dueStatuses(at now: Date, limit: Int) async throws -> (due: [OutboxEntry], nextDue: Date?)

    /// Records what posting an entry came to.
    func recordStatusDelivery(_ entryID: Int64, _ result: StatusDeliveryResult, at now: Date) async throws

    /// A build with its jobs and statuses; nil when there is no such build.
    func buildDetails(_ id: BuildID) async throws -> BuildDetails?

    /// A job; nil when there is no such job.
    func job(_ id: JobID) async throws -> JobRecord?

    /// The newest builds, newest first.
    func recentBuilds(limit: Int) async throws -> [BuildRecord]

    /// Deletes builds that ended before `date`, with their jobs, deliveries and statuses.
    /// Returns how many builds went, and the deleted jobs' ids, whose logs the caller removes.
    func removeBuilds(endedBefore date: Date) async throws -> (builds: Int, jobs: [JobID])
}
