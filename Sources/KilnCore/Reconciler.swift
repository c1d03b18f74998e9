import Foundation
import KilnPipeline
import Logging
import ServiceLifecycle
import Synchronization

/// A branch and its head commit, as the forge's API lists it.
public struct BranchHead: Sendable, Hashable {
    /// Short branch name.
    public var name: String
    /// Full commit id.
    public var sha: String

    /// Creates a head.
    public init(name: String, sha: String) {
        self.name = name
        self.sha = sha
    }
}

/// An open pull request and its head, as the forge's API lists it.
public struct OpenPullRequest: Sendable, Hashable {
    /// Its number (GitLab's iid).
    public var number: Int
    /// The head commit; a 12-character prefix on Bitbucket Cloud.
    public var headSHA: String
    /// The source branch.
    public var headBranch: String
    /// The target branch.
    public var baseBranch: String
    /// Whether the source is another repository.
    public var isFork: Bool
    /// The source repository's `owner/name`, for a fork.
    public var headRepository: String?
    /// When it last changed, as the forge says.
    public var updatedAt: Date?

    /// Creates a pull request.
    public init(
        number: Int, headSHA: String, headBranch: String, baseBranch: String, isFork: Bool, headRepository: String? = nil,
        updatedAt: Date? = nil
    ) {
        self.number = number
        self.headSHA = headSHA
        self.headBranch = headBranch
        self.baseBranch = baseBranch
        self.isFork = isFork
        self.headRepository = headRepository
        self.updatedAt = updatedAt
    }
}

/// What a forge says a repository's heads are now.
public struct ForgeHeads: Sendable, Hashable {
    /// The default branch's name.
    public var defaultBranch: String
    /// Every branch the listing returned.
    public var branches: [BranchHead]
    /// Open pull requests updated since the time asked for (all open ones when none was).
    public var pullRequests: [OpenPullRequest]
    /// Pages of each list read at most: a pass stays within the forge's rate limits.
    public static let maxPages = 10

    /// Creates heads.
    public init(defaultBranch: String, branches: [BranchHead], pullRequests: [OpenPullRequest]) {
        self.defaultBranch = defaultBranch
        self.branches = branches
        self.pullRequests = pullRequests
    }
}

/// Builds what webhooks failed to bring: at start and every `interval` (jittered by a tenth),
/// asks each configured repository's forge for its branch heads and open pull requests, and
/// queues a build (trigger `reconciled`) for each head the pipeline builds that Kiln has never
/// built. A build of any outcome counts as built. A repository with no builds yet gets only
/// its default branch.
public struct Reconciler: Service {
    /// How often a pass runs.
    public let interval: Duration
    let coordinator: BuildCoordinator
    let endpoints: [String: ForgeEndpoint]
    let source: any SourceProvider
    let logger: Logger
    /// Per repository, when its last successful pass began: pull requests older than that
    /// (less a margin for clocks) are not listed again.
    private let watermarks = Watermarks()
    /// How far before the last pass pull requests are still looked at: the forge's clock and ours differ.
    static let watermarkMargin: TimeInterval = 300

    /// Creates the reconciler over intake's forges.
    public init(
        coordinator: BuildCoordinator, endpoints: [String: ForgeEndpoint], source: any SourceProvider, interval: Duration,
        logger: Logger
    ) {
        self.coordinator = coordinator
        self.endpoints = endpoints
        self.source = source
        self.interval = interval
        self.logger = logger
    }

    public func run() async throws {
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                await pass(now: Date())
                let seconds = Double(interval.components.seconds) + Double(interval.components.attoseconds) / 1e18
                try? await Task.sleep(for: .seconds(seconds * Double.random(in: 0.9...1.1)))
            }
        }
    }

    /// One pass over every configured repository; returns the builds it queued.
    @discardableResult
    public func pass(now: Date) async -> [BuildID] {
        var queued: [BuildID] = []
        for (forgeName, endpoint) in endpoints.sorted(by: { $0.key < $1.key }) {
            for repository in endpoint.repositories.values.sorted(by: { $0.id < $1.id }) {
                if Task.isCancelled { return queued }
                do {
                    let builds = try await reconcile(repository, forge: forgeName, endpoint.forge, now: now)
                    coordinator.metrics.reconciled(forge: forgeName, outcome: "ok", builds: builds.count)
                    queued += builds
                } catch {
                    coordinator.metrics.reconciled(forge: forgeName, outcome: "failed", builds: 0)
                    logger.notice(
                        "could not reconcile a repository with its forge",
                        metadata: ["forge": "\(forgeName)", "repository": "\(repository.name)", "reason": "\(error)"])
                }
            }
        }
        return queued
    }

    /// Reconciles one repository; returns the builds queued.
    func reconcile(_ repository: Repository, forge forgeName: String, _ forge: any Forge, now: Date) async throws -> [BuildID] {
        let store = coordinator.store
        let since = watermarks.dates.withLock { $0[repository.id] }.map { $0.addingTimeInterval(-Self.watermarkMargin) }
        let heads = try await forge.heads(of: repository.name, pullRequestsUpdatedSince: since)
        let known = try await store.branches(forge: forgeName, repository: repository.name)
        let anyBuild = try await !store.builds(BuildListQuery(forge: forgeName, repository: repository.name, limit: 1)).isEmpty

        var pushes: [BranchHead] = []
        var pulls: [OpenPullRequest] = []
        if !anyBuild {
            pushes = heads.branches.filter { $0.name == heads.defaultBranch }
        } else {
            // Which branches the pipeline builds, as the default branch's newest build's pipeline file says.
            let defaultRef = GitRef.branch(heads.defaultBranch).fullName
            let spec = await pipeline(repository, at: known.first { $0.ref == defaultRef }?.sha)
            let knownRefs = Set(known.map(\.ref))
            pushes = heads.branches.filter { branch in
                if let spec { return spec.reasonNotBuilt(.push(.branch(branch.name))) == nil }
                return branch.name == heads.defaultBranch || knownRefs.contains(GitRef.branch(branch.name).fullName)
            }
            pulls = heads.pullRequests.filter { pull in
                if pull.isFork, repository.forks == .ignore { return false }
                return spec.map { $0.reasonNotBuilt(PipelineEvent(.pullRequest(base: pull.baseBranch))) == nil } ?? true
            }
        }

        var queued: [BuildID] = []
        for branch in pushes where CommitID.isValid(branch.sha) && Self.isBranchName(branch.name) {
            let ref = GitRef.branch(branch.name)
            if try await store.hasBuild(sha: branch.sha, ref: ref.fullName, pullRequest: nil, repository: repository.id) { continue }
            var delivery = NewDelivery(
                forge: forgeName, deliveryID: "reconcile:\(ref.fullName):\(branch.sha)", repositoryID: repository.id,
                repository: repository.name, ref: ref, sha: branch.sha)
            delivery.reconciled = true
            let accepted = try await coordinator.accept(delivery)
            if accepted.isNew { queued.append(accepted.buildID) }
        }
        for pull in pulls
        where pull.number > 0 && Self.isAbbreviatedCommit(pull.headSHA) && Self.isBranchName(pull.headBranch)
            && Self.isBranchName(pull.baseBranch)
        {
            if try await store.hasBuild(sha: pull.headSHA, ref: nil, pullRequest: pull.number, repository: repository.id) { continue }
            var delivery = NewDelivery(
                forge: forgeName, deliveryID: "reconcile:pull/\(pull.number):\(pull.headSHA)", repositoryID: repository.id,
                repository: repository.name, ref: .branch(pull.headBranch), sha: pull.headSHA,
                pullRequest: PullRequestInfo(
                    number: pull.number, headBranch: pull.headBranch, baseBranch: pull.baseBranch, isFork: pull.isFork,
                    headRepository: pull.headRepository))
            delivery.reconciled = true
            let accepted = try await coordinator.accept(delivery)
            if accepted.isNew { queued.append(accepted.buildID) }
        }
        watermarks.dates.withLock { $0[repository.id] = now }
        if !queued.isEmpty {
            logger.info(
                "queued builds whose webhooks never arrived",
                metadata: ["forge": "\(forgeName)", "repository": "\(repository.name)", "builds": "\(queued)"])
        }
        return queued
    }

    /// The pipeline file at `sha` in the mirror; nil when there is no such commit or no valid file.
    private func pipeline(_ repository: Repository, at sha: String?) async -> PipelineSpec? {
        guard let sha,
            case .contents(let bytes)? = try? await source.readFile(
                repository, sha: sha, path: PipelineFile.name, maxBytes: PipelineFile.maxBytes),
            case .valid(let spec) = PipelineFile.parse(bytes)
        else { return nil }
        return spec
    }

    private final class Watermarks: Sendable {
        let dates = Mutex<[RepositoryID: Date]>([:])
    }

    /// A branch name Kiln will put in a ref: printable, no `..`, at most 255 bytes (git refuses
    /// the rest when it fetches).
    static func isBranchName(_ name: String) -> Bool {
        !name.isEmpty && name.utf8.count <= 255 && !name.contains("..")
            && name.unicodeScalars.allSatisfy { $0.value > 0x20 && $0.value != 0x7F && !"~^:?*[\\".unicodeScalars.contains($0) }
    }

    /// A full commit id, or a prefix of at least 12 hex digits (Bitbucket Cloud's).
    static func isAbbreviatedCommit(_ sha: String) -> Bool {
        CommitID.isValid(sha) || (sha.count >= 12 && sha.count < 40 && sha.allSatisfy { $0.isHexDigit && !$0.isUppercase })
    }
}
