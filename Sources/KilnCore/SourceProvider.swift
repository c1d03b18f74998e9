/// A repository as the worker fetches it: from Kiln's configuration, never from a payload.
public struct RepositorySource: Sendable, Hashable {
    /// Database id; names its mirror directory.
    public var id: RepositoryID
    /// `owner/name`.
    public var name: String
    /// Where to fetch from: `https://`, `ssh://` or `file://`.
    public var cloneURL: String
    /// Token for https fetches, given to git through its credential callback.
    public var token: Secret?
    /// User name sent with the token (`x-access-token` for GitHub).
    public var tokenUser: String

    /// Creates a source.
    public init(id: RepositoryID, name: String, cloneURL: String, token: Secret? = nil, tokenUser: String = "x-access-token") {
        self.id = id
        self.name = name
        self.cloneURL = cloneURL
        self.token = token
        self.tokenUser = tokenUser
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

/// Git access for the worker: a mirror per repository, files at a commit, work trees.
/// Calls for different repositories may run concurrently; calls for one repository are serialised.
public protocol SourceProvider: Sendable {
    /// Fetches `ref` into the repository's mirror and confirms that `sha` is there.
    func fetch(_ repository: RepositorySource, ref: String, sha: String) async throws(SourceError)

    /// The file at `path` in commit `sha`. Files larger than `maxBytes` are not read.
    func readFile(_ repository: RepositorySource, sha: String, path: String, maxBytes: Int) async throws(SourceError)
        -> FileAtCommit

    /// The commit's message, and the files changed since `before` (nil when `before` is nil,
    /// not in the mirror, or the change is too large to list).
    func commitFacts(_ repository: RepositorySource, sha: String, comparedTo before: String?) async throws(SourceError)
        -> CommitFacts

    /// Writes the tree of `sha` into `directory`, which must not exist yet.
    func checkout(_ repository: RepositorySource, sha: String, into directory: String) async throws(SourceError)
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

/// What the pipeline's filters need to know about a commit.
public struct CommitFacts: Sendable, Hashable {
    /// The full commit message.
    public var message: String
    /// Paths changed since the compared commit; nil when unknown.
    public var changedFiles: [String]?

    /// Creates facts.
    public init(message: String, changedFiles: [String]?) {
        self.message = message
        self.changedFiles = changedFiles
    }
}
