import CGit2
import Foundation
import KilnCore
import KilnPipeline

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
    let pointer: OpaquePointer
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
    func fetch(url: String, refspecs: [String], credentials: Credentials, limits: FetchLimits) throws(SourceError) {
        var remote: OpaquePointer?
        var code = git_remote_create_anonymous(&remote, pointer, url)
        guard code == 0, let remote else {
            throw SourceError("cannot use clone URL \(GitMirrors.redacted(url)): \(LibGit2.lastError(code))")
        }
        defer { git_remote_free(remote) }
        var options = git_fetch_options()
        git_fetch_options_init(&options, UInt32(GIT_FETCH_OPTIONS_VERSION))
        let context = CredentialContext(credentials, limits: limits)
        let unmanaged = Unmanaged.passRetained(context)
        defer { unmanaged.release() }
        options.callbacks.payload = unmanaged.toOpaque()
        options.callbacks.credentials = credentialCallback
        // Called as the pack arrives: a non-zero answer stops the fetch.
        options.callbacks.transfer_progress = { stats, payload in
            guard let stats, let payload else { return 0 }
            let context = Unmanaged<CredentialContext>.fromOpaque(payload).takeUnretainedValue()
            return context.withinLimits(receivedBytes: Int(stats.pointee.received_bytes)) ? 0 : -1
        }
        code = withCStrings(refspecs) { pointers in
            var array = git_strarray(strings: pointers, count: refspecs.count)
            return git_remote_fetch(remote, &array, &options, "kiln: fetch")
        }
        if let exceeded = context.exceeded {
            throw SourceError("stopped fetching \(refspecs.joined(separator: " ")) from \(GitMirrors.redacted(url)): \(exceeded)")
        }
        guard code == 0 else {
            var message = LibGit2.lastError(code)
            if context.attempts > 1 || code == GIT_EAUTH.rawValue {
                message += " (the configured token was refused)"
            }
            throw SourceError("cannot fetch \(refspecs.joined(separator: " ")) from \(GitMirrors.redacted(url)): \(message)")
        }
    }

    /// How many refs `url` advertises (`git ls-remote`), connecting with `credentials` through
    /// libgit2's callback; no repository is needed.
    static func listRefs(url: String, credentials: Credentials, limits: FetchLimits) throws(SourceError) -> Int {
        LibGit2.initialize()
        var remote: OpaquePointer?
        var code = git_remote_create_detached(&remote, url)
        guard code == 0, let remote else {
            throw SourceError("cannot use clone URL \(GitMirrors.redacted(url)): \(LibGit2.lastError(code))")
        }
        defer { git_remote_free(remote) }
        var callbacks = git_remote_callbacks()
        git_remote_init_callbacks(&callbacks, UInt32(GIT_REMOTE_CALLBACKS_VERSION))
        let context = CredentialContext(credentials, limits: limits)
        let unmanaged = Unmanaged.passRetained(context)
        defer { unmanaged.release() }
        callbacks.payload = unmanaged.toOpaque()
        callbacks.credentials = credentialCallback
        code = git_remote_connect(remote, GIT_DIRECTION_FETCH, &callbacks, nil, nil)
        guard code == 0 else {
            var message = LibGit2.lastError(code)
            if context.attempts > 1 || code == GIT_EAUTH.rawValue { message += " (the configured token was refused)" }
            throw SourceError("cannot reach \(GitMirrors.redacted(url)): \(message)")
        }
        defer { git_remote_disconnect(remote) }
        var heads: UnsafeMutablePointer<UnsafePointer<git_remote_head>?>?
        var count = 0
        code = git_remote_ls(&heads, &count, remote)
        guard code == 0 else { throw SourceError("cannot list the refs of \(GitMirrors.redacted(url)): \(LibGit2.lastError(code))") }
        return count
    }

    /// The commit a ref points at.
    func target(of ref: String) throws(SourceError) -> String {
        var oid = git_oid()
        let code = git_reference_name_to_id(&oid, pointer, ref)
        guard code == 0 else { throw SourceError("\(ref) is not in the mirror after fetching: \(LibGit2.lastError(code))") }
        return Self.hex(oid)
    }

    /// The full id of the commit a hex prefix names; nil when there is none (or it is ambiguous).
    func resolve(_ prefix: String) throws(SourceError) -> String? {
        guard CommitID.isPrefix(prefix) else { throw SourceError("'\(prefix)' is not a commit id") }
        var oid = git_oid()
        guard prefix.withCString({ git_oid_fromstrn(&oid, $0, prefix.utf8.count) }) == 0 else { return nil }
        var commit: OpaquePointer?
        guard git_commit_lookup_prefix(&commit, pointer, &oid, prefix.utf8.count) == 0, let commit else { return nil }
        defer { git_commit_free(commit) }
        return Self.hex(git_commit_id(commit).pointee)
    }

    /// Merges `head` into `base` as a commit no ref points at. The commit's author, committer
    /// and time are fixed, so the same two commits always give the same merge commit.
    func merge(base: String, head: String) throws(SourceError) -> MergeResult {
        let baseCommit = try lookupCommit(base)
        defer { git_commit_free(baseCommit) }
        let headCommit = try lookupCommit(head)
        defer { git_commit_free(headCommit) }
        var index: OpaquePointer?
        var code = git_merge_commits(&index, pointer, baseCommit, headCommit, nil)
        guard code == 0, let index else { throw SourceError("cannot merge \(head) into \(base): \(LibGit2.lastError(code))") }
        defer { git_index_free(index) }
        if git_index_has_conflicts(index) != 0 {
            var conflicts: [String] = []
            var iterator: OpaquePointer?
            if git_index_conflict_iterator_new(&iterator, index) == 0, let iterator {
                defer { git_index_conflict_iterator_free(iterator) }
                var ancestor: UnsafePointer<git_index_entry>?
                var ours: UnsafePointer<git_index_entry>?
                var theirs: UnsafePointer<git_index_entry>?
                while git_index_conflict_next(&ancestor, &ours, &theirs, iterator) == 0 {
                    if let path = (ours ?? theirs ?? ancestor)?.pointee.path { conflicts.append(String(cString: path)) }
                }
            }
            return .conflict(conflicts.sorted())
        }
        var treeID = git_oid()
        code = git_index_write_tree_to(&treeID, index, pointer)
        guard code == 0 else { throw SourceError("cannot write the merged tree: \(LibGit2.lastError(code))") }
        var tree: OpaquePointer?
        code = git_tree_lookup(&tree, pointer, &treeID)
        guard code == 0, let tree else { throw SourceError("cannot read the merged tree: \(LibGit2.lastError(code))") }
        defer { git_tree_free(tree) }
        var signature: UnsafeMutablePointer<git_signature>?
        code = git_signature_new(&signature, "Kiln", "kiln@localhost", 0, 0)
        guard code == 0, let signature else { throw SourceError("cannot sign the merge: \(LibGit2.lastError(code))") }
        defer { git_signature_free(signature) }
        var merged = git_oid()
        var parents: [OpaquePointer?] = [baseCommit, headCommit]
        code = parents.withUnsafeMutableBufferPointer { buffer in
            git_commit_create(
                &merged, pointer, nil, signature, signature, "UTF-8", "Merge \(head) into \(base) (built by Kiln)", tree, 2,
                buffer.baseAddress)
        }
        guard code == 0 else { throw SourceError("cannot write the merge commit: \(LibGit2.lastError(code))") }
        return .merged(Self.hex(merged))
    }

    /// Whether `commit` is `ancestor` or descends from it; false when either is unknown here.
    func isDescendant(_ commit: String, of ancestor: String) throws(SourceError) -> Bool {
        guard CommitID.isValid(commit), CommitID.isValid(ancestor) else { return false }
        if commit == ancestor { return true }
        var commitID = git_oid()
        var ancestorID = git_oid()
        guard commit.withCString({ git_oid_fromstr(&commitID, $0) }) == 0,
            ancestor.withCString({ git_oid_fromstr(&ancestorID, $0) }) == 0
        else { return false }
        return git_graph_descendant_of(pointer, &commitID, &ancestorID) == 1
    }

    /// The best common ancestor of two commits.
    func mergeBase(_ a: String, _ b: String) throws(SourceError) -> String? {
        var first = git_oid()
        var second = git_oid()
        guard a.withCString({ git_oid_fromstr(&first, $0) }) == 0, b.withCString({ git_oid_fromstr(&second, $0) }) == 0 else {
            return nil
        }
        var base = git_oid()
        return git_merge_base(&base, pointer, &first, &second) == 0 ? Self.hex(base) : nil
    }

    /// The tree id of commit `sha`.
    func treeID(of sha: String) throws(SourceError) -> String {
        let commit = try lookupCommit(sha)
        defer { git_commit_free(commit) }
        return Self.hex(git_commit_tree_id(commit).pointee)
    }

    static func hex(_ oid: git_oid) -> String {
        var oid = oid
        var buffer = [CChar](repeating: 0, count: Int(GIT_OID_HEXSZ) + 1)
        git_oid_tostr(&buffer, buffer.count, &oid)
        return String(cString: buffer)
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

/// libgit2's credential callback: asks the `CredentialContext` passed as its payload.
private let credentialCallback: git_credential_acquire_cb = { out, _, usernameFromURL, allowedTypes, payload in
    guard let out, let payload else { return GIT_PASSTHROUGH.rawValue }
    let context = Unmanaged<CredentialContext>.fromOpaque(payload).takeUnretainedValue()
    return context.answer(out, usernameFromURL: usernameFromURL, allowedTypes: allowedTypes)
}

/// State for libgit2's credential callback: answers once, then refuses, so a wrong
/// token fails the fetch instead of looping.
private final class CredentialContext {
    let credentials: Credentials
    let limits: FetchLimits
    let deadline: ContinuousClock.Instant
    var attempts = 0
    /// Why the fetch was stopped, once it was.
    var exceeded: String?

    init(_ credentials: Credentials, limits: FetchLimits) {
        self.credentials = credentials
        self.limits = limits
        self.deadline = .now + limits.time
    }

    /// Whether the fetch may go on after `receivedBytes`.
    func withinLimits(receivedBytes: Int) -> Bool {
        if receivedBytes > limits.bytes {
            let size = limits.bytes >= 1 << 20 ? "\(limits.bytes >> 20) MiB" : "\(limits.bytes >> 10) KiB"
            exceeded = "the repository sent more than \(size), the limit of a fetch"
        } else if ContinuousClock.now > deadline {
            exceeded = "the fetch took longer than \(HumanDuration.format(limits.time)), the limit of a fetch"
        }
        return exceeded == nil
    }

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
