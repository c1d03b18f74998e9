import CGit2
import Foundation
import KilnCore

/// The build service's own bare repository: every ad-hoc build's source is a commit here,
/// written from a request's files or fetched from an allowed git URL, and built from it like any
/// repository's commit.
public final class BuildServiceRepository: Sendable {
    /// Its directory (a bare repository).
    public let path: String
    private let limits: FetchLimits
    private let queue = DispatchQueue(label: "kiln.git.build-service")

    /// The repository at `path`, made when missing.
    public init(path: String, limits: FetchLimits = FetchLimits()) {
        self.path = path
        self.limits = limits
        LibGit2.initialize()
    }

    /// `file://` URL of the repository, for the synthetic repository that builds from it.
    public var url: String { "file://" + path }

    /// Commits `files` (names without directories → contents) as a commit with no parent on
    /// `ref`; returns the commit's id.
    public func commit(files: [String: [UInt8]], ref: String, message: String) async throws(SourceError) -> String {
        try await onQueue { () throws(SourceError) in
            try GitRepository.openOrCreateBare(at: self.path).commitFiles(files, ref: ref, message: message)
        }
    }

    /// Fetches `branch` of `url` to `ref` with `token` given through libgit2's credential
    /// callback (never in the URL or an argument list); returns the commit fetched.
    public func fetch(url: String, branch: String, user: String, token: Secret?, into ref: String) async throws(SourceError) -> String {
        try await onQueue { () throws(SourceError) in
            let repository = try GitRepository.openOrCreateBare(at: self.path)
            try repository.fetch(
                url: url, refspecs: ["+refs/heads/\(branch):\(ref)"], credentials: Credentials(user: user, token: token), limits: self.limits)
            do throws(SourceError) {
                return try repository.target(of: ref)
            } catch {
                throw SourceError("branch '\(branch)' is not in \(GitMirrors.redacted(url)); check the branch name")
            }
        }
    }

    private func onQueue<T: Sendable>(_ work: @escaping @Sendable () throws(SourceError) -> T) async throws(SourceError) -> T {
        try await queue.gitWork(work)
    }
}

extension GitRepository {
    /// Writes `files` as a tree, commits it with no parent and points `ref` at it.
    func commitFiles(_ files: [String: [UInt8]], ref: String, message: String) throws(SourceError) -> String {
        var builder: OpaquePointer?
        var code = git_treebuilder_new(&builder, pointer, nil)
        guard code == 0, let builder else { throw SourceError("cannot build a tree: \(LibGit2.lastError(code))") }
        defer { git_treebuilder_free(builder) }
        for (name, contents) in files.sorted(by: { $0.key < $1.key }) {
            var blob = git_oid()
            code = contents.withUnsafeBytes { git_blob_create_from_buffer(&blob, pointer, $0.baseAddress, contents.count) }
            guard code == 0 else { throw SourceError("cannot write \(name): \(LibGit2.lastError(code))") }
            code = git_treebuilder_insert(nil, builder, name, &blob, GIT_FILEMODE_BLOB)
            guard code == 0 else { throw SourceError("cannot add \(name) to the tree: \(LibGit2.lastError(code))") }
        }
        var treeID = git_oid()
        code = git_treebuilder_write(&treeID, builder)
        guard code == 0 else { throw SourceError("cannot write the tree: \(LibGit2.lastError(code))") }
        var tree: OpaquePointer?
        code = git_tree_lookup(&tree, pointer, &treeID)
        guard code == 0, let tree else { throw SourceError("cannot read the tree: \(LibGit2.lastError(code))") }
        defer { git_tree_free(tree) }
        var signature: UnsafeMutablePointer<git_signature>?
        code = git_signature_now(&signature, "Kiln", "kiln@localhost")
        guard code == 0, let signature else { throw SourceError("cannot sign the commit: \(LibGit2.lastError(code))") }
        defer { git_signature_free(signature) }
        var commit = git_oid()
        code = git_commit_create(&commit, pointer, ref, signature, signature, "UTF-8", message, tree, 0, nil)
        guard code == 0 else { throw SourceError("cannot write the commit: \(LibGit2.lastError(code))") }
        return Self.hex(commit)
    }
}
