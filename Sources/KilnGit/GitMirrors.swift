import CGit2
import Dispatch
import Foundation
import KilnCore
import Synchronization

/// Bare git mirrors, one per configured repository, under a root directory.
///
/// Mirrors are named by repository id (`<root>/<id>.git`), never by a name from a
/// payload. Work for one repository runs on that repository's serial queue, so fetches
/// into one mirror never overlap; libgit2's blocking calls stay off Swift's cooperative pool.
public final class GitMirrors: SourceProvider {
    private let root: String
    private let queues = Mutex<[RepositoryID: DispatchQueue]>([:])
    private let limits: FetchLimits

    /// Mirrors under `root`, created on first use; each fetch stops at `limits`.
    public init(root: String, limits: FetchLimits = FetchLimits()) {
        self.root = root
        self.limits = limits
        LibGit2.initialize()
    }

    /// The mirror directory of a repository.
    public func mirrorPath(_ id: RepositoryID) -> String { "\(root)/\(id).git" }

    public func fetch(_ repository: Repository, ref: String) async throws(SourceError) -> String {
        guard Self.isBranchOrTag(ref) else {
            throw SourceError("refusing to fetch '\(ref)': only refs/heads/* and refs/tags/* are fetched")
        }
        let credentials = try await Self.credentials(repository)
        return try await onQueue(repository.id) { () throws(SourceError) in
            let mirror = try self.openMirror(repository.id)
            try mirror.fetch(url: repository.cloneURL, refspecs: ["+\(ref):\(ref)"], credentials: credentials, limits: self.limits)
            return try mirror.target(of: ref)
        }
    }

    /// How many refs the repository's clone URL advertises (`git ls-remote`, for `kiln doctor`).
    public func listRefs(_ repository: Repository) async throws(SourceError) -> Int {
        let credentials = try await Self.credentials(repository)
        return try await onQueue(repository.id) { () throws(SourceError) in
            try GitRepository.listRefs(url: repository.cloneURL, credentials: credentials, limits: self.limits)
        }
    }

    public func fetchPullRequest(_ repository: Repository, _ pullRequest: PullRequestInfo) async throws(SourceError)
        -> String
    {
        let local = "refs/kiln/pull/\(pullRequest.number)"
        let url: String
        let remote: String
        switch repository.pullRequestFetch {
        case .ref:
            url = repository.cloneURL
            remote = repository.pullRequestFetch.ref(for: pullRequest.number)!
        case .forkBranch(let base):
            remote = "refs/heads/\(pullRequest.headBranch)"
            if pullRequest.isFork {
                // The fork's address is the configured forge's, with a name checked character by character.
                guard let fork = pullRequest.headRepository, Self.isRepositoryName(fork) else {
                    throw SourceError("pull request #\(pullRequest.number) names no usable fork repository")
                }
                url = "\(base)/\(fork).git"
            } else {
                url = repository.cloneURL
            }
        }
        guard remote.withCString({ git_reference_is_valid_name($0) }) == 1 else {
            throw SourceError("pull request #\(pullRequest.number) has a branch name git refuses: \(remote)")
        }
        let credentials = try await Self.credentials(repository)
        return try await onQueue(repository.id) { () throws(SourceError) in
            let mirror = try self.openMirror(repository.id)
            try mirror.fetch(url: url, refspecs: ["+\(remote):\(local)"], credentials: credentials, limits: self.limits)
            return try mirror.target(of: local)
        }
    }

    public func resolve(_ repository: Repository, commit prefix: String) async throws(SourceError) -> String? {
        try await onQueue(repository.id) { () throws(SourceError) in
            try self.openMirror(repository.id).resolve(prefix)
        }
    }

    public func merge(_ repository: Repository, base: String, head: String) async throws(SourceError) -> MergeResult {
        try await onQueue(repository.id) { () throws(SourceError) in
            try self.openMirror(repository.id).merge(base: base, head: head)
        }
    }

    public func isDescendant(_ repository: Repository, _ commit: String, of ancestor: String) async throws(SourceError)
        -> Bool
    {
        try await onQueue(repository.id) { () throws(SourceError) in
            try self.openMirror(repository.id).isDescendant(commit, of: ancestor)
        }
    }

    public func mergeBase(_ repository: Repository, _ a: String, _ b: String) async throws(SourceError) -> String? {
        try await onQueue(repository.id) { () throws(SourceError) in
            try self.openMirror(repository.id).mergeBase(a, b)
        }
    }

    /// The credentials for one fetch; a token source is asked now, since git's callback cannot wait.
    private static func credentials(_ repository: Repository) async throws(SourceError) -> Credentials {
        switch repository.credentials {
        case .none:
            return Credentials(user: "git", token: nil)
        case .token(let user, let token):
            return Credentials(user: user, token: token)
        case .source(let user, let source):
            do throws(ForgeAPIError) {
                return Credentials(user: user, token: try await source.accessToken(for: repository.name))
            } catch {
                throw SourceError("cannot get an access token to fetch \(repository.name): \(error)")
            }
        }
    }

    /// `owner/name`, with the characters forges allow and nothing that changes a URL's meaning.
    static func isRepositoryName(_ name: String) -> Bool {
        name.range(of: "^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$", options: .regularExpression) != nil
            && !name.split(separator: "/").contains { $0 == "." || $0 == ".." }
    }

    public func readFile(_ repository: Repository, sha: String, path: String, maxBytes: Int) async throws(SourceError)
        -> FileAtCommit
    {
        try await onQueue(repository.id) { () throws(SourceError) in
            try self.openMirror(repository.id).readFile(sha: sha, path: path, maxBytes: maxBytes)
        }
    }

    public func commitFacts(_ repository: Repository, sha: String, comparedTo before: String?) async throws(SourceError)
        -> CommitFacts
    {
        try await onQueue(repository.id) { () throws(SourceError) in
            let mirror = try self.openMirror(repository.id)
            let message = try mirror.message(sha: sha)
            var changed: [String]?
            if let before, try mirror.hasCommit(before) {
                changed = try mirror.changedFiles(from: before, to: sha, limit: Self.changedFilesLimit)
            }
            return CommitFacts(message: message, tree: try mirror.treeID(of: sha), changedFiles: changed)
        }
    }

    /// Above this many changed files the list counts as unknown (every `paths` filter passes).
    static let changedFilesLimit = 10_000

    public func checkout(_ repository: Repository, sha: String, into directory: String) async throws(SourceError) {
        try await onQueue(repository.id) { () throws(SourceError) in
            try self.openMirror(repository.id).checkout(sha: sha, into: directory)
        }
    }

    private func openMirror(_ id: RepositoryID) throws(SourceError) -> GitRepository {
        do {
            try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        } catch {
            throw SourceError("cannot create the mirror directory \(root): \(error.localizedDescription)")
        }
        return try GitRepository.openOrCreateBare(at: mirrorPath(id))
    }

    private func onQueue<T: Sendable>(_ id: RepositoryID, _ work: @escaping @Sendable () throws(SourceError) -> T)
        async throws(SourceError) -> T
    {
        let queue = queues.withLock { queues in
            if let queue = queues[id] { return queue }
            let queue = DispatchQueue(label: "kiln.git.\(id)")
            queues[id] = queue
            return queue
        }
        return try await queue.gitWork(work)
    }

    static func isBranchOrTag(_ ref: String) -> Bool {
        guard ref.hasPrefix("refs/heads/") || ref.hasPrefix("refs/tags/") else { return false }
        return ref.withCString { git_reference_is_valid_name($0) } == 1
    }

    /// A URL for messages: any user information is dropped.
    public static func redacted(_ url: String) -> String {
        guard var components = URLComponents(string: url), components.user != nil || components.password != nil else {
            return url
        }
        components.user = nil
        components.password = nil
        return components.string ?? "<clone URL>"
    }
}

/// How much one fetch may take: a huge or slow repository (a fork's pull request, say) is
/// stopped with a message instead of holding its mirror's queue. The time is checked as data
/// arrives; libgit2 1.5 has no timeout for a server that sends nothing at all.
public struct FetchLimits: Sendable, Hashable {
    /// Longest a fetch may take.
    public var time: Duration
    /// Most bytes a fetch may receive.
    public var bytes: Int

    /// Limits; by default ten minutes and 4 GiB.
    public init(time: Duration = .seconds(600), bytes: Int = 4 << 30) {
        self.time = time
        self.bytes = bytes
    }
}

/// What the credential callback may answer with.
struct Credentials: Sendable {
    var user: String
    var token: Secret?
}

extension DispatchQueue {
    /// Runs libgit2 work on this queue (libgit2 blocks; one repository's work goes in order) and
    /// returns its result to the caller's task.
    func gitWork<T: Sendable>(_ work: @escaping @Sendable () throws(SourceError) -> T) async throws(SourceError) -> T {
        let result: Result<T, SourceError> = await withCheckedContinuation { continuation in
            self.async {
                do throws(SourceError) {
                    continuation.resume(returning: .success(try work()))
                } catch {
                    continuation.resume(returning: .failure(error))
                }
            }
        }
        return try result.get()
    }
}
