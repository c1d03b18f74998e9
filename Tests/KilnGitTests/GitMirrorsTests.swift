import Foundation
import KilnCore
import KilnTesting
import Testing

@testable import KilnGit

@Suite struct GitMirrorsTests {
    func fixture(_ body: (TestGitRepository, GitMirrors, TemporaryDirectory) async throws -> Void) async throws {
        try await withTemporaryDirectory("kiln-git") { directory in
            let origin = try TestGitRepository(at: directory.appending("origin"))
            try await body(origin, GitMirrors(root: directory.appending("mirrors")), directory)
        }
    }

    @Test func fetchReadAndCheckOutExactlyThePushedCommit() async throws {
        try await fixture { origin, mirrors, directory in
            try origin.write(".kiln.yml", "jobs: {}\n")
            try origin.write("src/run.sh", "#!/bin/sh\necho hi\n")
            try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: origin.path + "/src/run.sh")
            let first = try origin.commit("first")
            try origin.write(".kiln.yml", "jobs: {second: {build: .#x}}\n")
            let second = try origin.commit("second")
            let source = Repository(id: 7, name: "o/r", cloneURL: "file://\(origin.path)")

            #expect(try await mirrors.fetch(source, ref: "refs/heads/main") == second)
            #expect(FileManager.default.fileExists(atPath: directory.appending("mirrors/7.git/HEAD")))
            #expect(try await mirrors.resolve(source, commit: String(second.prefix(12))) == second)
            #expect(try await mirrors.readFile(source, sha: first, path: ".kiln.yml", maxBytes: 1024) == .contents(Array("jobs: {}\n".utf8)))
            #expect(try await mirrors.readFile(source, sha: second, path: ".kiln.yml", maxBytes: 1024)
                == .contents(Array("jobs: {second: {build: .#x}}\n".utf8)))
            #expect(try await mirrors.readFile(source, sha: second, path: "missing.yml", maxBytes: 1024) == .missing)
            #expect(try await mirrors.readFile(source, sha: second, path: "src", maxBytes: 1024) == .missing)
            #expect(try await mirrors.readFile(source, sha: second, path: ".kiln.yml", maxBytes: 4) == .tooLarge(size: 29))

            let tree = directory.appending("tree")
            try await mirrors.checkout(source, sha: first, into: tree)
            #expect(try String(contentsOfFile: tree + "/.kiln.yml", encoding: .utf8) == "jobs: {}\n")
            #expect(FileManager.default.isExecutableFile(atPath: tree + "/src/run.sh"))
            #expect(!FileManager.default.fileExists(atPath: tree + "/.git"))
        }
    }

    @Test func aFetchLargerThanItsLimitStopsWithAMessage() async throws {
        try await withTemporaryDirectory("kiln-git") { directory in
            let origin = try TestGitRepository(at: directory.appending("served/big.git"))
            // Random bytes do not compress: the pack is about as large as the file.
            let noise = (0..<(256 << 10)).map { _ in Character(UnicodeScalar(UInt8.random(in: 33...126))) }
            try origin.write("big.txt", String(noise))
            try origin.commit("a large file")
            let mirrors = GitMirrors(root: directory.appending("mirrors"), limits: FetchLimits(bytes: 64 << 10))
            let server = try await GitHTTPServer(root: directory.appending("served"), user: "u", password: "p")
            defer { Task { await server.stop() } }
            let source = Repository(
                id: 1, name: "o/r", cloneURL: "\(server.url)/big.git", credentials: .token(user: "u", Secret("p")))
            do {
                _ = try await mirrors.fetch(source, ref: "refs/heads/main")
                Issue.record("expected the fetch to stop")
            } catch let error as SourceError {
                #expect(error.message.hasSuffix("the repository sent more than 64 KiB, the limit of a fetch"), "\(error.message)")
            }
            // Within the limit, the same fetch goes through.
            let roomy = GitMirrors(root: directory.appending("mirrors2"), limits: FetchLimits(bytes: 4 << 20))
            #expect(try await roomy.fetch(source, ref: "refs/heads/main").count == 40)
        }
    }

    @Test func aCommitThatIsNotInTheMirrorDoesNotResolve() async throws {
        try await fixture { origin, mirrors, _ in
            try origin.commit("only commit")
            let source = Repository(id: 1, name: "o/r", cloneURL: "file://\(origin.path)")
            _ = try await mirrors.fetch(source, ref: "refs/heads/main")
            #expect(try await mirrors.resolve(source, commit: String(repeating: "e", count: 40)) == nil)
            #expect(try await mirrors.resolve(source, commit: "eeeeeeeeeeee") == nil)
        }
    }

    @Test func anUnreachableRepositoryIsAnErrorNamingIt() async throws {
        try await fixture { _, mirrors, directory in
            let source = Repository(id: 1, name: "o/r", cloneURL: "file://\(directory.appending("nowhere"))")
            do {
                _ = try await mirrors.fetch(source, ref: "refs/heads/main")
                Issue.record("expected an error")
            } catch let error as SourceError {
                #expect(error.message.hasPrefix("cannot fetch +refs/heads/main:refs/heads/main from file://\(directory.appending("nowhere"))"))
            }
        }
    }

    @Test(arguments: ["refs/pull/1/head", "refs/heads/../x", "HEAD", "refs/heads/a b", "--upload-pack=x"])
    func onlyBranchesAndTagsAreFetched(ref: String) async throws {
        try await fixture { origin, mirrors, _ in
            let source = Repository(id: 1, name: "o/r", cloneURL: "file://\(origin.path)")
            await #expect(throws: SourceError.self) {
                _ = try await mirrors.fetch(source, ref: ref)
            }
        }
    }

    /// The token goes through libgit2's credential callback: the server sees it in the
    /// Authorization header, and it is in no URL.
    @Test(.timeLimit(.minutes(1))) func tokenIsSentThroughTheCredentialCallback() async throws {
        try await withTemporaryDirectory("kiln-git-http") { directory in
            let origin = try TestGitRepository(at: directory.appending("served/hello.git"))
            let sha = try origin.commit("served over http")
            let server = try await GitHTTPServer(root: directory.appending("served"), user: "x-access-token", password: "s3cret-token")
            defer { Task { await server.stop() } }
            let mirrors = GitMirrors(root: directory.appending("mirrors"))
            let good = Repository(
                id: 1, name: "o/hello", cloneURL: "\(server.url)/hello.git",
                credentials: .token(user: "x-access-token", Secret("s3cret-token")))
            #expect(try await mirrors.fetch(good, ref: "refs/heads/main") == sha)
            #expect(server.requests.contains { $0.authorized })
            #expect(server.requests.allSatisfy { !$0.uri.contains("s3cret") })

            let wrong = Repository(
                id: 2, name: "o/hello", cloneURL: "\(server.url)/hello.git", credentials: .token(user: "x-access-token", Secret("wrong")))
            do {
                _ = try await mirrors.fetch(wrong, ref: "refs/heads/main")
                Issue.record("a wrong token must fail")
            } catch let error as SourceError {
                #expect(error.message.contains("the configured token was refused"))
                #expect(!error.message.contains("wrong"))
            }
        }
    }

    @Test func commitFactsListTheMessageAndChangedFiles() async throws {
        try await fixture { origin, mirrors, _ in
            try origin.write("keep.txt", "1")
            try origin.write("old-name.txt", "moving")
            try origin.write("gone.txt", "bye")
            let before = try origin.commit("first")
            try origin.write("keep.txt", "2")
            try origin.git(["mv", "old-name.txt", "new-name.txt"])
            try origin.git(["rm", "--quiet", "gone.txt"])
            try origin.write("docs/added.md", "hi")
            let after = try origin.commit("second\n\nwith a body [skip ci]")
            let source = Repository(id: 3, name: "o/r", cloneURL: "file://\(origin.path)")
            _ = try await mirrors.fetch(source, ref: "refs/heads/main")

            let facts = try await mirrors.commitFacts(source, sha: after, comparedTo: before)
            #expect(facts.message == "second\n\nwith a body [skip ci]\n")
            #expect(Set(facts.changedFiles ?? []) == ["keep.txt", "old-name.txt", "new-name.txt", "gone.txt", "docs/added.md"])
            #expect(try await mirrors.commitFacts(source, sha: after, comparedTo: nil).changedFiles == nil)
            let unknown = String(repeating: "c", count: 40)
            #expect(try await mirrors.commitFacts(source, sha: after, comparedTo: unknown).changedFiles == nil)
        }
    }

    @Test func pullRequestHeadsComeFromTheForgesRef() async throws {
        try await fixture { origin, mirrors, _ in
            try origin.write("a.txt", "base")
            try origin.commit("base")
            try origin.branch("feature")
            try origin.write("a.txt", "feature")
            let head = try origin.commit("feature work")
            try origin.git(["update-ref", "refs/pull/7/head", head])
            let source = Repository(id: 1, name: "o/r", cloneURL: "file://\(origin.path)")
            let pull = PullRequestInfo(number: 7, headBranch: "feature", baseBranch: "main", isFork: true)
            #expect(try await mirrors.fetchPullRequest(source, pull) == head)
            #expect(try await mirrors.resolve(source, commit: String(head.prefix(12))) == head)
        }
    }

    @Test func forkBranchesComeFromTheConfiguredForgeURL() async throws {
        try await fixture { origin, mirrors, directory in
            try origin.commit("base")
            let fork = try TestGitRepository(at: directory.appending("forks/alice/hello.git"))
            try fork.git(["fetch", "--quiet", origin.path, "main"])
            try fork.git(["reset", "--quiet", "--hard", "FETCH_HEAD"])
            try fork.branch("idea")
            try fork.write("idea.txt", "!")
            let head = try fork.commit("an idea")
            let source = Repository(
                id: 1, name: "o/r", cloneURL: "file://\(origin.path)",
                pullRequestFetch: .forkBranch(base: "file://\(directory.appending("forks"))"))
            let pull = PullRequestInfo(number: 3, headBranch: "idea", baseBranch: "main", isFork: true, headRepository: "alice/hello")
            #expect(try await mirrors.fetchPullRequest(source, pull) == head)
            // A fork name that would change the URL's meaning is refused.
            for name in ["../evil", "alice/../x", "alice", "alice/hello?x=1"] {
                let bad = PullRequestInfo(number: 3, headBranch: "idea", baseBranch: "main", isFork: true, headRepository: name)
                await #expect(throws: SourceError.self) { try await mirrors.fetchPullRequest(source, bad) }
            }
        }
    }

    @Test func mergingAPullRequestIntoItsBase() async throws {
        try await fixture { origin, mirrors, _ in
            try origin.write("a.txt", "one\n")
            try origin.write("b.txt", "b\n")
            let root = try origin.commit("root")
            try origin.branch("feature")
            try origin.write("b.txt", "feature b\n")
            let head = try origin.commit("feature changes b")
            try origin.git(["checkout", "--quiet", "main"])
            try origin.write("a.txt", "main a\n")
            let base = try origin.commit("main changes a")
            try origin.git(["update-ref", "refs/pull/1/head", head])
            let source = Repository(id: 1, name: "o/r", cloneURL: "file://\(origin.path)")
            _ = try await mirrors.fetch(source, ref: "refs/heads/main")
            _ = try await mirrors.fetchPullRequest(source, PullRequestInfo(number: 1, headBranch: "feature", baseBranch: "main", isFork: false))
            guard case .merged(let merge) = try await mirrors.merge(source, base: base, head: head) else {
                Issue.record("expected a clean merge")
                return
            }
            // Deterministic: the same two commits give the same merge commit.
            #expect(try await mirrors.merge(source, base: base, head: head) == .merged(merge))
            #expect(try await mirrors.readFile(source, sha: merge, path: "a.txt", maxBytes: 100) == .contents(Array("main a\n".utf8)))
            #expect(try await mirrors.readFile(source, sha: merge, path: "b.txt", maxBytes: 100) == .contents(Array("feature b\n".utf8)))
            #expect(try await mirrors.isDescendant(source, merge, of: head))
            #expect(try await mirrors.isDescendant(source, head, of: root))
            #expect(try await !mirrors.isDescendant(source, head, of: base))
            #expect(try await mirrors.mergeBase(source, base, head) == root)
        }
    }

    @Test func aConflictNamesItsFiles() async throws {
        try await fixture { origin, mirrors, _ in
            try origin.write("a.txt", "one\n")
            try origin.commit("root")
            try origin.branch("feature")
            try origin.write("a.txt", "feature\n")
            let head = try origin.commit("feature")
            try origin.git(["checkout", "--quiet", "main"])
            try origin.write("a.txt", "main\n")
            let base = try origin.commit("main")
            try origin.git(["update-ref", "refs/pull/2/head", head])
            let source = Repository(id: 1, name: "o/r", cloneURL: "file://\(origin.path)")
            _ = try await mirrors.fetch(source, ref: "refs/heads/main")
            _ = try await mirrors.fetchPullRequest(source, PullRequestInfo(number: 2, headBranch: "feature", baseBranch: "main", isFork: false))
            #expect(try await mirrors.merge(source, base: base, head: head) == .conflict(["a.txt"]))
        }
    }

    @Test func credentialsAreRedactedFromURLsInMessages() {
        #expect(GitMirrors.redacted("https://user:pass@example.com/o/r.git") == "https://example.com/o/r.git")
        #expect(GitMirrors.redacted("file:///srv/git/r") == "file:///srv/git/r")
    }
}
