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
            let source = RepositorySource(id: 7, name: "o/r", cloneURL: "file://\(origin.path)")

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

    @Test func aCommitThatIsNotInTheMirrorDoesNotResolve() async throws {
        try await fixture { origin, mirrors, _ in
            try origin.commit("only commit")
            let source = RepositorySource(id: 1, name: "o/r", cloneURL: "file://\(origin.path)")
            _ = try await mirrors.fetch(source, ref: "refs/heads/main")
            #expect(try await mirrors.resolve(source, commit: String(repeating: "e", count: 40)) == nil)
            #expect(try await mirrors.resolve(source, commit: "eeeeeeeeeeee") == nil)
        }
    }

    @Test func anUnreachableRepositoryIsAnErrorNamingIt() async throws {
        try await fixture { _, mirrors, directory in
            let source = RepositorySource(id: 1, name: "o/r", cloneURL: "file://\(directory.appending("nowhere"))")
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
            let source = RepositorySource(id: 1, name: "o/r", cloneURL: "file://\(origin.path)")
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
            let good = RepositorySource(
                id: 1, name: "o/hello", cloneURL: "\(server.url)/hello.git",
                credentials: .token(user: "x-access-token", Secret("s3cret-token")))
            #expect(try await mirrors.fetch(good, ref: "refs/heads/main") == sha)
            #expect(server.requests.contains { $0.authorized })
            #expect(server.requests.allSatisfy { !$0.uri.contains("s3cret") })

            let wrong = RepositorySource(
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
            let source = RepositorySource(id: 3, name: "o/r", cloneURL: "file://\(origin.path)")
            _ = try await mirrors.fetch(source, ref: "refs/heads/main")

            let facts = try await mirrors.commitFacts(source, sha: after, comparedTo: before)
            #expect(facts.message == "second\n\nwith a body [skip ci]\n")
            #expect(Set(facts.changedFiles ?? []) == ["keep.txt", "old-name.txt", "new-name.txt", "gone.txt", "docs/added.md"])
            #expect(try await mirrors.commitFacts(source, sha: after, comparedTo: nil).changedFiles == nil)
            let unknown = String(repeating: "c", count: 40)
            #expect(try await mirrors.commitFacts(source, sha: after, comparedTo: unknown).changedFiles == nil)
        }
    }

    @Test func credentialsAreRedactedFromURLsInMessages() {
        #expect(GitMirrors.redacted("https://user:pass@example.com/o/r.git") == "https://example.com/o/r.git")
        #expect(GitMirrors.redacted("file:///srv/git/r") == "file:///srv/git/r")
    }
}
