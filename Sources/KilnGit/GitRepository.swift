import CGit2
import Foundation
import KilnCore

/// libgit2's global state, initialised once per process.
enum LibGit2 {
    private static let once: Void = { _ = git_libgit2_init() }()

    static func initialize() { _ = once }

    /// libgit2's message for the last error on this thread.
    static func lastError(_ code: Int32) -> String {
        if let error = git_error_last(), let message = error.pointee.message {
            return String(cString: message)
        }
        return "libgit2 error \(code)"
    }
}

/// One open repository. Not thread-safe: use it on one thread (the repository's queue) and let it go.
final class GitRepository {
    private let pointer: OpaquePointer
    private let path: String

    private init(pointer: OpaquePointer, path: String) {
        self.pointer = pointer
        self.path = path
    }

    deinit { git_repository_free(pointer) }

    static func openOrCreateBare(at path: String) throws(SourceError) -> GitRepository {
        var repository: OpaquePointer?
        var code = git_repository_open_bare(&repository, path)
        if code == GIT_ENOTFOUND.rawValue {
            code = git_repository_init(&repository, path, 1)
        }
        guard code == 0, let repository else {
            throw SourceError("cannot open the git mirror at \(path): \(LibGit2.lastError(code))")
        }
        return GitRepository(pointer: repository, path: path)
    }

    /// Fetches `refspecs` from `url`. Credentials are handed to libgit2 only through its
    /// callback; they never appear in the URL or in any argument list.
    func fetch(url: String, refspecs: [String], credentials: Credentials) throws(SourceError) {
        var remote: OpaquePointer?
        var code = git_remote_create_anonymous(&remote, pointer, url)
        guard code == 0, let remote else {
            throw SourceError("cannot use clone URL \(GitMirrors.redacted(url)): \(LibGit2.lastError(code))")
        }
        defer { git_remote_free(remote) }
        var options = git_fetch_options()
        git_fetch_options_init(&options, UInt32(GIT_FETCH_OPTIONS_VERSION))
        let context = CredentialContext(credentials)
        let unmanaged = Unmanaged.passRetained(context)
        defer { unmanaged.release() }
        options.callbacks.payload = unmanaged.toOpaque()
        options.callbacks.credentials = { out, _, usernameFromURL, allowedTypes, payload in
            guard let out, let payload else { return GIT_PASSTHROUGH.rawValue }
            let context = Unmanaged<CredentialContext>.fromOpaque(payload).takeUnretainedValue()
            return context.answer(out, usernameFromURL: usernameFromURL, allowedTypes: allowedTypes)
        }
        code = withCStrings(refspecs) { pointers in
            var array = git_strarray(strings: pointers, count: refspecs.count)
            return git_remote_fetch(remote, &array, &options, "kiln: fetch")
        }
        guard code == 0 else {
            var message = LibGit2.lastError(code)
            if context.attempts > 1 || code == GIT_EAUTH.rawValue {
                message += " (the configured token was refused)"
            }
            throw SourceError("cannot fetch \(refspecs.joined(separator: " ")) from \(GitMirrors.redacted(url)): \(message)")
        }
    }

    func hasCommit(_ sha: String) throws(SourceError) -> Bool {
        guard CommitID.isValid(sha) else { throw SourceError("'\(sha)' is not a commit id") }
        guard let commit = try? lookupCommit(sha) else { return false }
        git_commit_free(commit)
        return true
    }

    func readFile(sha: String, path: String, maxBytes: Int) throws(SourceError) -> FileAtCommit {
        let commit = try lookupCommit(sha)
        defer { git_commit_free(commit) }
        var tree: OpaquePointer?
        var code = git_commit_tree(&tree, commit)
        guard code == 0, let tree else { throw SourceError("cannot read the tree of \(sha): \(LibGit2.lastError(code))") }
        defer { git_tree_free(tree) }
        var entry: OpaquePointer?
        code = git_tree_entry_bypath(&entry, tree, path)
        if code == GIT_ENOTFOUND.rawValue { return .missing }
        guard code == 0, let entry else { throw SourceError("cannot look up \(path) in \(sha): \(LibGit2.lastError(code))") }
        defer { git_tree_entry_free(entry) }
        guard git_tree_entry_type(entry) == GIT_OBJECT_BLOB else { return .missing }
        var blob: OpaquePointer?
        code = git_blob_lookup(&blob, pointer, git_tree_entry_id(entry))
        guard code == 0, let blob else { throw SourceError("cannot read \(path) in \(sha): \(LibGit2.lastError(code))") }
        defer { git_blob_free(blob) }
        let size = Int(git_blob_rawsize(blob))
        guard size <= maxBytes else { return .tooLarge(size: size) }
        guard size > 0, let content = git_blob_rawcontent(blob) else { return .contents([]) }
        return .contents(Array(UnsafeRawBufferPointer(start: content, count: size)))
    }

    /// The full message of commit `sha`.
    func message(sha: String) throws(SourceError) -> String {
        let commit = try lookupCommit(sha)
        defer { git_commit_free(commit) }
        return git_commit_message(commit).map { String(cString: $0) } ?? ""
    }

    /// Paths that differ between the trees of `from` and `to` (both sides of a rename);
    /// nil when more than `limit` files changed.
    func changedFiles(from: String, to: String, limit: Int) throws(SourceError) -> [String]? {
        let old = try tree(of: from)
        defer { git_tree_free(old) }
        let new = try tree(of: to)
        defer { git_tree_free(new) }
        var diff: OpaquePointer?
        let code = git_diff_tree_to_tree(&diff, pointer, old, new, nil)
        guard code == 0, let diff else { throw SourceError("cannot compare \(from) with \(to): \(LibGit2.lastError(code))") }
        defer { git_diff_free(diff) }
        let count = git_diff_num_deltas(diff)
        guard count <= limit else { return nil }
        var paths: [String] = []
        for index in 0..<count {
            guard let delta = git_diff_get_delta(diff, index)?.pointee else { continue }
            for path in [delta.old_file.path, delta.new_file.path].compactMap({ $0 }).map({ String(cString: $0) })
            where paths.last != path {
                paths.append(path)
            }
        }
        return paths
    }

    private func tree(of sha: String) throws(SourceError) -> OpaquePointer {
        let commit = try lookupCommit(sha)
        defer { git_commit_free(commit) }
        var tree: OpaquePointer?
        let code = git_commit_tree(&tree, commit)
        guard code == 0, let tree else { throw SourceError("cannot read the tree of \(sha): \(LibGit2.lastError(code))") }
        return tree
    }

    /// Writes the tree of `sha` into `directory` (created here; it must not exist).
    func checkout(sha: String, into directory: String) throws(SourceError) {
        let commit = try lookupCommit(sha)
        defer { git_commit_free(commit) }
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: false)
        } catch {
            throw SourceError("cannot create the work tree \(directory): \(error.localizedDescription)")
        }
        var options = git_checkout_options()
        git_checkout_options_init(&options, UInt32(GIT_CHECKOUT_OPTIONS_VERSION))
        options.checkout_strategy = GIT_CHECKOUT_FORCE.rawValue | GIT_CHECKOUT_DONT_UPDATE_INDEX.rawValue
        let code = directory.withCString { target in
            options.target_directory = target
            return git_checkout_tree(pointer, commit, &options)
        }
        guard code == 0 else {
            throw SourceError("cannot check out \(sha) into \(directory): \(LibGit2.lastError(code))")
        }
    }

    private func lookupCommit(_ sha: String) throws(SourceError) -> OpaquePointer {
        var oid = git_oid()
        guard sha.withCString({ git_oid_fromstr(&oid, $0) }) == 0 else {
            throw SourceError("'\(sha)' is not a commit id this git can read (libgit2 1.5 reads SHA-1 ids only)")
        }
        var commit: OpaquePointer?
        let code = git_commit_lookup(&commit, pointer, &oid)
        guard code == 0, let commit else {
            throw SourceError("commit \(sha) is not in the mirror: \(LibGit2.lastError(code))")
        }
        return commit
    }
}

/// State for libgit2's credential callback: answers once, then refuses, so a wrong
/// token fails the fetch instead of looping.
private final class CredentialContext {
    let credentials: Credentials
    var attempts = 0

    init(_ credentials: Credentials) { self.credentials = credentials }

    func answer(_ out: UnsafeMutablePointer<UnsafeMutablePointer<git_credential>?>, usernameFromURL: UnsafePointer<CChar>?, allowedTypes: UInt32) -> Int32 {
        attempts += 1
        guard attempts == 1 else { return GIT_EAUTH.rawValue }
        if allowedTypes & GIT_CREDENTIAL_USERPASS_PLAINTEXT.rawValue != 0, let token = credentials.token {
            return git_credential_userpass_plaintext_new(out, credentials.user, token.value)
        }
        if allowedTypes & GIT_CREDENTIAL_SSH_KEY.rawValue != 0 {
            let user = usernameFromURL.map { String(cString: $0) } ?? "git"
            return git_credential_ssh_key_from_agent(out, user)
        }
        return GIT_PASSTHROUGH.rawValue
    }
}

/// Calls `body` with C strings for `strings`, valid for the duration of the call.
private func withCStrings<R>(_ strings: [String], _ body: (UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> R) -> R {
    let pointers = strings.map { strdup($0) }
    defer { pointers.forEach { free($0) } }
    var array = pointers
    return array.withUnsafeMutableBufferPointer { body($0.baseAddress!) }
}
