import Foundation
import KilnPipeline

/// Where a build is in its life.
public enum BuildState: String, Sendable, Hashable, Codable, CaseIterable {
    /// Accepted; waiting for the worker to fetch and plan it.
    case queued
    /// Being fetched and planned.
    case planning
    /// Jobs are queued or running.
    case running
    /// A pull request from an untrusted fork waits for an administrator to approve its head commit.
    case awaitingApproval = "awaiting_approval"
    /// Every job succeeded.
    case succeeded
    /// A job failed or timed out, or the pipeline file is invalid.
    case failed
    /// Kiln could not do its work (fetch, checkout, nix).
    case errored
    /// Cancelled before it finished.
    case cancelled
    /// The pipeline's `on` filters exclude this event; nothing ran, nothing was posted.
    case skipped

    /// Whether the build has ended.
    public var isFinal: Bool { ![.queued, .planning, .running, .awaitingApproval].contains(self) }
}

/// What a pull request build builds.
public struct PullRequestInfo: Sendable, Hashable {
    /// The pull request's number.
    public var number: Int
    /// The source branch (short name).
    public var headBranch: String
    /// The target branch (short name).
    public var baseBranch: String
    /// Whether the source is a fork.
    public var isFork: Bool
    /// The fork's `owner/name` (Bitbucket Cloud, which has no pull request refs).
    public var headRepository: String?

    /// Creates the information.
    public init(number: Int, headBranch: String, baseBranch: String, isFork: Bool, headRepository: String? = nil) {
        self.number = number
        self.headBranch = headBranch
        self.baseBranch = baseBranch
        self.isFork = isFork
        self.headRepository = headRepository
    }
}

/// Where a job is in its life.
public enum JobState: String, Sendable, Hashable, Codable {
    /// Waiting for a slot and for the jobs it needs.
    case queued
    /// nix is running.
    case running
    /// Built.
    case succeeded
    /// The build failed (or did not evaluate).
    case failed
    /// Over its wall-clock or silence limit.
    case timedOut = "timed_out"
    /// Cancelled or superseded.
    case cancelled
    /// Kiln's own failure.
    case errored
    /// Not run because a job it needs did not succeed.
    case skipped

    /// Whether the job has ended.
    public var isFinal: Bool { self != .queued && self != .running }
}

/// A build as stored.
public struct BuildRecord: Sendable, Hashable {
    /// Database id.
    public var id: BuildID
    /// Configured repository's id.
    public var repositoryID: RepositoryID
    /// Forge name from the configuration (`/webhooks/{forge}`).
    public var forge: String
    /// `owner/name`.
    public var repository: String
    /// Commit being built.
    public var sha: String
    /// Full ref name, `refs/heads/main`.
    public var ref: String
    /// State.
    public var state: BuildState
    /// Human summary of the state; for final builds the aggregate status description.
    public var summary: String
    /// Pipeline diagnostics, formatted `file:line:column: message`, when the file was invalid.
    public var diagnostics: [String]
    /// When the webhook was accepted.
    public var createdAt: Date
    /// When planning finished.
    public var startedAt: Date?
    /// When the build ended.
    public var finishedAt: Date?
    /// The ref's previous commit, when the forge said and it was not all zeros (for changed files).
    public var beforeSHA: String?
    /// The pull request, for pull request builds; nil for pushes.
    public var pullRequest: PullRequestInfo?
    /// Whether the build may use its own pipeline file and the binary cache (false for
    /// unapproved or approved fork pull requests: they use the base branch's file and never push).
    public var trusted: Bool
    /// The commit checked out: the merge of the pull request into its base, or `sha` itself.
    public var builtSHA: String?
    /// The build this one runs again (a re-run never reuses an earlier build's result).
    public var rerunOf: BuildID?
    /// Set when the build was cancelled while jobs of it ran: the summary those jobs end with,
    /// should Kiln stop before they do.
    public var cancelReason: String?
    /// The first line of the head commit's message, once planning read it.
    public var title: String?
    /// A re-run of only what did not succeed in `rerunOf`.
    public var rerunFailedOnly = false
    /// The tree built with the pipeline file's digest, once planning resolved it.
    public var treeKey: String?
    /// For an ad-hoc build: what it builds.
    public var adHoc: AdHocPlan?
    /// The service an ad-hoc build is for.
    public var service: String?
    /// Queued by the reconciler: the forge's webhook never arrived.
    public var reconciled = false
    /// The Kiln instance planning it, while it plans.
    public var owner: String?
    /// Until when that instance holds it; past this, another takes it over.
    public var leaseUntil: Date?

    /// Creates a record.
    public init(
        id: BuildID, repositoryID: RepositoryID, forge: String, repository: String, sha: String, ref: String,
        state: BuildState, summary: String, diagnostics: [String] = [], createdAt: Date, startedAt: Date? = nil,
        finishedAt: Date? = nil, beforeSHA: String? = nil, pullRequest: PullRequestInfo? = nil, trusted: Bool = true,
        builtSHA: String? = nil, rerunOf: BuildID? = nil, cancelReason: String? = nil, title: String? = nil
    ) {
        self.title = title
        self.id = id
        self.repositoryID = repositoryID
        self.forge = forge
        self.repository = repository
        self.sha = sha
        self.ref = ref
        self.state = state
        self.summary = summary
        self.diagnostics = diagnostics
        self.createdAt = createdAt
        self.startedAt = startedAt
        self.finishedAt = finishedAt
        self.beforeSHA = beforeSHA
        self.pullRequest = pullRequest
        self.trusted = trusted
        self.builtSHA = builtSHA
        self.rerunOf = rerunOf
        self.cancelReason = cancelReason
    }

    /// The branch statuses are reported against (Bitbucket's `refname`, GitLab's `ref`).
    public var statusBranch: String? {
        if let pullRequest { return pullRequest.headBranch }
        return GitRef(fullName: ref).map(\.shortName)
    }
}

/// A job as stored.
public struct JobRecord: Sendable, Hashable {
    /// Database id; also the log file's name.
    public var id: JobID
    /// Owning build.
    public var buildID: BuildID
    /// Job name from the plan (`tests (x86_64-linux)` for a system variant).
    public var name: String
    /// What it builds.
    public var target: JobTarget
    /// The system it builds for; nil for the server's own.
    public var system: String?
    /// Names of jobs that must succeed first.
    public var needs: [String]
    /// Wall-clock limit.
    public var timeout: Duration
    /// Silence limit.
    public var maxSilent: Duration
    /// A failure does not fail the build, and jobs that need it still run.
    public var allowFailure: Bool
    /// Push outputs to the binary cache (trusted builds only).
    public var cachePush: Bool
    /// Bytes of free memory the job waits for.
    public var minMemory: Int?
    /// State.
    public var state: JobState
    /// Human summary; for final jobs the status description.
    public var summary: String
    /// nix's exit code, when nix ran to an exit.
    public var exitCode: Int32?
    /// Derivations the job evaluated to.
    public var derivations: [String]
    /// Derivations its nix built.
    public var built: [String] = []
    /// Derivations another job or build was building, which it waited for.
    public var waitedFor: [String] = []
    /// The remote builders that built any of `built`; empty when all of it was built here.
    public var machines: [String] = []
    /// The Kiln instance running it, while it runs.
    public var owner: String?
    /// Until when that instance holds it; past this, another takes it over.
    public var leaseUntil: Date?
    /// Outputs built.
    public var outputs: [BuiltOutput]
    /// CPU seconds of every process the job ran.
    public var cpuSeconds: Double?
    /// Peak resident memory of the job's processes together.
    public var peakMemoryKilobytes: Int?
    /// What became of the binary cache push, when there was one.
    public var cacheSummary: String?
    /// The image its output is pushed as (`image` in the pipeline), when it has one.
    public var image: ImageSpec?
    /// What its build needs of the sandbox (`network`, `read-only-paths`, `provide-bin-sh`).
    public var constraints = BuildConstraints()
    /// Its own tags (`tags` in the pipeline).
    public var tags: [String: String] = [:]
    /// Largest size of its builds' temporary directories together, sampled.
    public var peakStorageKilobytes: Int?
    /// What became of the image push, when there was one.
    public var imagePush: ImagePushResult?
    /// Store paths its nix fetched from a substituter.
    public var substituted: Int = 0
    /// NAR bytes of the closure it pushed to the binary cache.
    public var cachePushedBytes: Int64?
    /// How many times the job was started (restarts re-run an interrupted job).
    public var attempt: Int
    /// When the job was queued.
    public var queuedAt: Date
    /// When the latest attempt started.
    public var startedAt: Date?
    /// When the job ended.
    public var finishedAt: Date?

    /// Creates a record.
    public init(
        id: JobID, buildID: BuildID, name: String, target: JobTarget, system: String? = nil, needs: [String],
        timeout: Duration, maxSilent: Duration, allowFailure: Bool = false, cachePush: Bool = false, minMemory: Int? = nil,
        state: JobState, summary: String, exitCode: Int32? = nil, derivations: [String] = [], outputs: [BuiltOutput] = [],
        cpuSeconds: Double? = nil, peakMemoryKilobytes: Int? = nil, cacheSummary: String? = nil, attempt: Int = 0,
        queuedAt: Date, startedAt: Date? = nil, finishedAt: Date? = nil
    ) {
        self.id = id
        self.buildID = buildID
        self.name = name
        self.target = target
        self.system = system
        self.needs = needs
        self.timeout = timeout
        self.maxSilent = maxSilent
        self.allowFailure = allowFailure
        self.cachePush = cachePush
        self.minMemory = minMemory
        self.state = state
        self.summary = summary
        self.exitCode = exitCode
        self.derivations = derivations
        self.outputs = outputs
        self.cpuSeconds = cpuSeconds
        self.peakMemoryKilobytes = peakMemoryKilobytes
        self.cacheSummary = cacheSummary
        self.attempt = attempt
        self.queuedAt = queuedAt
        self.startedAt = startedAt
        self.finishedAt = finishedAt
    }

    /// The job's status context.
    public var context: String { "kiln/\(name)" }

    /// Whether jobs that need this one may run: it succeeded, or it ended and may fail.
    public var satisfiesNeeds: Bool {
        state == .succeeded || (allowFailure && [.failed, .timedOut, .errored].contains(state))
    }
}

/// A status waiting in, or gone through, the outbox.
public struct OutboxEntry: Sendable, Hashable {
    /// Where an entry is.
    public enum Delivery: String, Sendable, Hashable, Codable {
        /// Waiting to be posted (or to be retried).
        case pending
        /// The forge accepted it.
        case delivered
        /// Kept only in Kiln (`status-api: none`).
        case recorded
        /// A newer status for the same commit and context replaced it before it was sent.
        case superseded
        /// The forge refused it; not retried.
        case dropped
    }

    /// Database id; entries are posted in id order.
    public var id: Int64
    /// The build the status belongs to.
    public var buildID: BuildID
    /// Forge name from the configuration.
    public var forge: String
    /// The commit.
    public var commit: CommitRef
    /// The status, without its link (added when posted).
    public var status: StatusUpdate
    /// Where the entry is.
    public var delivery: Delivery
    /// Posting attempts so far.
    public var attempts: Int
    /// Earliest time of the next attempt.
    public var nextAttemptAt: Date
    /// The forge's last answer or the network error, for the build page.
    public var lastError: String?
    /// When the entry was created.
    public var createdAt: Date

    /// Creates an entry.
    public init(
        id: Int64, buildID: BuildID, forge: String, commit: CommitRef, status: StatusUpdate, delivery: Delivery,
        attempts: Int, nextAttemptAt: Date, lastError: String?, createdAt: Date
    ) {
        self.id = id
        self.buildID = buildID
        self.forge = forge
        self.commit = commit
        self.status = status
        self.delivery = delivery
        self.attempts = attempts
        self.nextAttemptAt = nextAttemptAt
        self.lastError = lastError
        self.createdAt = createdAt
    }
}
