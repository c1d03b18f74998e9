/// Something that hands out short-lived access tokens (a GitHub App's installation tokens).
public protocol AccessTokenSource: Sendable {
    /// A token valid now for `repository` (`owner/name`).
    func accessToken(for repository: String) async throws(ForgeAPIError) -> Secret
}

/// How git authenticates to a repository over https.
public enum GitCredentials: Sendable {
    /// Anonymously (public repositories, `file://`, or ssh with the agent).
    case none
    /// With a fixed token as the password of `user`.
    case token(user: String, Secret)
    /// With a token asked for just before each fetch, as the password of `user`.
    case source(user: String, any AccessTokenSource)
}

/// A configured repository, built once from Kiln's configuration (never from a payload): what
/// intake matches deliveries against, what the planner applies, what the worker fetches.
public struct Repository: Sendable {
    /// Database id; names its mirror directory.
    public var id: RepositoryID
    /// `owner/name` as the configuration spells it; statuses are posted under this name, never the payload's.
    public var name: String
    /// Where to fetch from: `https://`, `ssh://` or `file://`.
    public var cloneURL: String
    /// How git authenticates; given to git through its credential callback, never in a URL or argv.
    public var credentials: GitCredentials
    /// How pull request heads are fetched.
    public var pullRequestFetch: PullRequestFetch
    /// What to do with pull requests from forks.
    public var forks: ForkPolicy
    /// What a pull request build builds.
    public var pullRequests: PullRequestMode

    /// Creates a repository.
    public init(
        id: RepositoryID, name: String, cloneURL: String, credentials: GitCredentials = .none,
        pullRequestFetch: PullRequestFetch = .ref("refs/pull/%d/head"), forks: ForkPolicy = .requireApproval,
        pullRequests: PullRequestMode = .merge
    ) {
        self.id = id
        self.name = name
        self.cloneURL = cloneURL
        self.credentials = credentials
        self.pullRequestFetch = pullRequestFetch
        self.forks = forks
        self.pullRequests = pullRequests
    }
}

/// Why a git operation failed.
public struct SourceError: Error, Sendable, Hashable, CustomStringConvertible {
    /// What failed, with the offending value and git's own message.
    public var message: String

    /// Creates an error.
    public init(_ message: String) { self.message = message }

    public var description: String { message }
}

/// Git access for the worker: a mirror per repository, files at a commit, merges, work trees.
/// Calls for different repositories may run concurrently; calls for one repository are serialised.
public protocol SourceProvider: Sendable {
    /// Fetches a branch or tag into the repository's mirror; returns the commit it points at.
    func fetch(_ repository: Repository, ref: String) async throws(SourceError) -> String

    /// Fetches pull request `pullRequest`'s head into the mirror; returns the commit it points at.
    func fetchPullRequest(_ repository: Repository, _ pullRequest: PullRequestInfo) async throws(SourceError) -> String

    /// The full id of the commit `prefix` names in the mirror; nil when the mirror has no such commit.
    func resolve(_ repository: Repository, commit prefix: String) async throws(SourceError) -> String?

    /// The file at `path` in commit `sha`. Files larger than `maxBytes` are not read.
    func readFile(_ repository: Repository, sha: String, path: String, maxBytes: Int) async throws(SourceError)
        -> FileAtCommit

    /// The commit's message and tree, and the files changed since `before` (nil when `before`
    /// is nil, not in the mirror, or the change is too large to list).
    func commitFacts(_ repository: Repository, sha: String, comparedTo before: String?) async throws(SourceError)
        -> CommitFacts

    /// Merges `head` into `base` in the mirror, as a merge commit no ref points at.
    func merge(_ repository: Repository, base: String, head: String) async throws(SourceError) -> MergeResult

    /// Whether `commit` is `ancestor` or has it in its history; false when either is unknown.
    func isDescendant(_ repository: Repository, _ commit: String, of ancestor: String) async throws(SourceError) -> Bool

    /// The best common ancestor of two commits; nil when they share none.
    func mergeBase(_ repository: Repository, _ a: String, _ b: String) async throws(SourceError) -> String?

    /// Writes the tree of `sha` into `directory`, which must not exist yet.
    func checkout(_ repository: Repository, sha: String, into directory: String) async throws(SourceError)
}

/// What merging a pull request into its base came to.
public enum MergeResult: Sendable, Hashable {
    /// The merge commit.
    case merged(String)
    /// These paths conflict.
    case conflict([String])
}

/// A file as found in a commit.
public enum FileAtCommit: Sendable, Hashable {
    /// The commit has no such file.
    case missing
    /// The file's bytes.
    case contents([UInt8])
    /// The file exists but is larger than the caller's limit; it was not read.
    case tooLarge(size: Int)
}

/// What the pipeline's filters (and the build's key) need to know about a commit.
public struct CommitFacts: Sendable, Hashable {
    /// The full commit message.
    public var message: String
    /// The commit's tree id.
    public var tree: String
    /// Paths changed since the compared commit; nil when unknown.
    public var changedFiles: [String]?

    /// Creates facts.
    public init(message: String, tree: String, changedFiles: [String]?) {
        self.message = message
        self.tree = tree
        self.changedFiles = changedFiles
    }
}
