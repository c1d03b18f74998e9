import Foundation
import KilnTesting
import Testing

/// Each forge's words for the states the scenario checks.
struct ForgeWords: Sendable {
    var pending: String
    var success: String
    var cancelled: String

    static let all: [FakeForge.Kind: ForgeWords] = [
        .github: .init(pending: "pending", success: "success", cancelled: "error"),
        .gitlab: .init(pending: "pending", success: "success", cancelled: "canceled"),
        .bitbucketCloud: .init(pending: "INPROGRESS", success: "SUCCESSFUL", cancelled: "STOPPED"),
        .bitbucketServer: .init(pending: "INPROGRESS", success: "SUCCESSFUL", cancelled: "CANCELLED"),
        .gitea: .init(pending: "pending", success: "success", cancelled: "error"),
    ]
}

/// A repository at one forge, with Kiln configured for it, over real sockets.
struct ForgeWorld {
    static let secret = "forge-webhook-secret"
    static let token = "forge-token"
    static let admin = "admin-token"

    let kind: FakeForge.Kind
    let repository: String
    let directory: TemporaryDirectory
    let origin: TestGitRepository
    let forge: FakeForge
    let configPath: String

    var words: ForgeWords { ForgeWords.all[kind]! }

    static func make(_ kind: FakeForge.Kind, extraConfig: String = "", database: String? = nil) async throws -> ForgeWorld {
        let repository = kind == .bitbucketServer ? "PRJ/hello" : kind == .gitlab ? "group/hello" : "octo/hello"
        let directory = try TemporaryDirectory("kiln-\(kind.rawValue)")
        let origin = try TestGitRepository(at: directory.appending("origin"))
        let forge = try await FakeForge(kind, token: token, repositories: [repository])
        for (file, value) in [("secret", secret), ("token", token), ("admin", admin)] {
            try value.write(toFile: directory.appending(file), atomically: true, encoding: .utf8)
        }
        let config = """
            server: {listen: "127.0.0.1:0", public-url: "http://kiln.test", admin-token-file: admin}
            storage: {data-dir: data\(database.map { ", database: \"\($0)\"" } ?? "")}
            nix: {options: {substituters: ""}}
            forges:
              forge:
                type: \(kind.rawValue)
                api-url: "\(forge.url)"
                git-url-placeholder: x
                webhook-secret-files: [secret]
                token-file: token
            repositories:
              - {forge: forge, name: "\(repository)", clone-url: "file://\(origin.path)"}
            \(extraConfig)
            """
        let gitURL = kind == .bitbucketCloud ? "git-url: \"file://\(directory.appending("forks"))\"" : ""
        try config.replacingOccurrences(of: "git-url-placeholder: x", with: gitURL)
            .write(toFile: directory.appending("kiln.yaml"), atomically: true, encoding: .utf8)
        return ForgeWorld(kind: kind, repository: repository, directory: directory, origin: origin, forge: forge,
            configPath: directory.appending("kiln.yaml"))
    }

    func close() async {
        await forge.stop()
        directory.remove()
    }

    func send(_ kiln: KilnInstance, _ payload: (event: String, body: [UInt8])) async throws -> HTTPTestClient.Answer {
        try await HTTPTestClient.send(
            "POST", "\(kiln.url)/webhooks/forge",
            headers: ForgePayloads.headers(kind, event: payload.event, body: payload.body, secret: Self.secret), body: payload.body)
    }

    /// A context's states on a commit, GitLab's `running` counted as `pending`: which of the two
    /// reach the forge before the outbox replaces them with a newer state depends on timing.
    func states(_ context: String, _ sha: String) -> [String] {
        forge.states(context, sha: sha).map { $0 == "running" ? "pending" : $0 }.reduce(into: []) { folded, state in
            if folded.last != state { folded.append(state) }
        }
    }
}

@Suite(.enabled(if: NixTest.enabled, "nix is not installed (set KILN_REQUIRE_NIX to make this a failure)"))
struct ForgeEndToEndTests {
    @Test(.timeLimit(.minutes(4)), arguments: FakeForge.Kind.allCases)
    func pushForkApprovalAndSupersede(kind: FakeForge.Kind) async throws {
        let world = try await ForgeWorld.make(kind)
        defer { Task { await world.close() } }
        let marker = String(UInt64.random(in: 1_000_000_000...9_999_999_999))
        let flake = TestFlake(packages: [
            "base": TestFlake.succeeding("base-\(marker)"), "fork": TestFlake.succeeding("fork-\(marker)"),
            "slow": "echo slow-\(marker); $bb sleep 300; true", "quick": TestFlake.succeeding("quick-\(marker)"),
        ])
        try flake.write(to: world.origin.path)
        try world.origin.write(".kiln.yml", "jobs:\n  base-only:\n    build: .#base\n")
        let first = try world.origin.commit("base pipeline")
        let kiln = try await KilnInstance.start(config: world.configPath)
        defer { Task { await kiln.stop() } }
        let words = world.words

        // 1. A push builds and reports.
        let pushed = try await world.send(kiln, ForgePayloads.push(kind, repository: world.repository, branch: "main", sha: first, before: nil))
        #expect(pushed.status == 202, "\(pushed.body)")
        try await eventually("the push's final statuses", within: .seconds(90)) {
            world.states("kiln", first).count == 2 && world.states("kiln/base-only", first).count == 2
        }
        #expect(world.states("kiln", first) == [words.pending, words.success])
        #expect(world.states("kiln/base-only", first) == [words.pending, words.success])
        #expect(world.forge.refusals.isEmpty, "\(world.forge.refusals)")
        if kind == .bitbucketCloud || kind == .gitlab || kind == .bitbucketServer {
            #expect(world.forge.statuses.filter { $0.sha == first }.allSatisfy { ($0.branch ?? "").hasSuffix("main") })
        }

        // 2. A fork's pull request waits for approval, then builds the merge with the base branch's pipeline.
        try world.origin.branch("feature")
        try world.origin.write(".kiln.yml", "jobs:\n  fork-only:\n    build: .#fork\n")
        try world.origin.write("feature.txt", "new")
        let head = try world.origin.commit("a fork's change, with its own pipeline")
        try world.origin.git(["checkout", "--quiet", "main"])
        if let ref = ForgePayloads.pullRequestRef(kind, number: 12) {
            try world.origin.git(["update-ref", ref, head])
        } else {
            let fork = try TestGitRepository(at: world.directory.appending("forks/alice/hello.git"))
            try fork.git(["fetch", "--quiet", world.origin.path, "feature"])
            try fork.git(["reset", "--quiet", "--hard", "FETCH_HEAD"])
            try fork.git(["branch", "--quiet", "feature"])
        }
        let fork = kind == .bitbucketServer ? "~ALICE/hello" : "alice/hello"
        let opened = try await world.send(
            kiln, ForgePayloads.pullRequest(kind, repository: world.repository, number: 12, head: head, branch: "feature", base: "main", fork: fork))
        #expect(opened.status == 202, "\(opened.body)")
        let waiting = try #require(opened.json["build_id"] as? Int)
        try await eventually("the awaiting-approval status", within: .seconds(60)) { !world.states("kiln", head).isEmpty }
        #expect(world.forge.statuses.filter { $0.sha == head }.map(\.context) == ["kiln"])
        #expect(world.forge.statuses.first { $0.sha == head }?.description.hasPrefix("awaiting approval") == true)
        #expect((try await kiln.build(waiting))["state"] as? String == "awaiting_approval")

        let refused = try await HTTPTestClient.send(
            "POST", "\(kiln.url)/api/v1/approvals", headers: [("Authorization", "Bearer wrong")],
            body: Array(#"{"build_id":\#(waiting),"sha":"\#(head)"}"#.utf8))
        #expect(refused.status == 401)
        let approved = try await HTTPTestClient.send(
            "POST", "\(kiln.url)/api/v1/approvals", headers: [("Authorization", "Bearer \(ForgeWorld.admin)")],
            body: Array(#"{"build_id":\#(waiting),"sha":"\#(head)"}"#.utf8))
        #expect(approved.status == 200, "\(approved.body)")
        try await eventually("the approved build's final statuses", within: .seconds(90)) {
            world.states("kiln", head).last == words.success && world.states("kiln/base-only", head).last == words.success
        }
        let contexts = Set(world.forge.statuses.filter { $0.sha == head }.map(\.context))
        #expect(contexts == ["kiln", "kiln/base-only"], "the fork's own pipeline must not run")
        let built = try await kiln.build(waiting)
        #expect(built["trusted"] as? Bool == false)
        #expect((built["built_sha"] as? String).map { $0 != head } == true, "merge mode builds the merge, not the head")

        // 3. A second push supersedes a running build; its statuses end cancelled.
        try world.origin.write(".kiln.yml", "jobs:\n  slow:\n    build: .#slow\n")
        let second = try world.origin.commit("a slow build")
        _ = try await world.send(kiln, ForgePayloads.push(kind, repository: world.repository, branch: "main", sha: second, before: first))
        try await eventually("the slow builder to run", within: .seconds(60)) { !Processes.matching("slow-\(marker)").isEmpty }
        try world.origin.write(".kiln.yml", "jobs:\n  quick:\n    build: .#quick\n")
        let third = try world.origin.commit("a quick build")
        _ = try await world.send(kiln, ForgePayloads.push(kind, repository: world.repository, branch: "main", sha: third, before: second))
        // The build's and the job's statuses are posted concurrently: wait for both.
        try await eventually("the superseded build to end", within: .seconds(60)) {
            world.states("kiln", second).count == 2 && world.states("kiln/slow", second).count == 2
        }
        #expect(world.states("kiln", second) == [words.pending, words.cancelled])
        #expect(world.states("kiln/slow", second) == [words.pending, words.cancelled])
        #expect(world.forge.statuses.last { $0.sha == second && $0.context == "kiln/slow" }?.description == "superseded by \(third.prefix(7))")
        try await eventually("the newer build's final status", within: .seconds(60)) { world.states("kiln", third).last == words.success }
        try await eventually("the slow builder to be gone", within: .seconds(15)) { Processes.matching("slow-\(marker)").isEmpty }

        // 4. A pull request closed while it awaits approval does not leave its status pending.
        try world.origin.git(["checkout", "--quiet", "feature"])
        try world.origin.write("feature.txt", "newer")
        let abandoned = try world.origin.commit("a change that will be abandoned")
        try world.origin.git(["checkout", "--quiet", "main"])
        if let ref = ForgePayloads.pullRequestRef(kind, number: 13) {
            try world.origin.git(["update-ref", ref, abandoned])
        } else {
            let fork = try TestGitRepository(at: world.directory.appending("forks/alice/hello.git"))
            try fork.git(["fetch", "--quiet", world.origin.path, "feature:feature", "--force"])
        }
        let pullRequest = { (action: ForgePayloads.PullRequestAction) in
            ForgePayloads.pullRequest(
                kind, action, repository: world.repository, number: 13, head: abandoned, branch: "feature", base: "main", fork: fork)
        }
        let reopened = try await world.send(kiln, pullRequest(.opened))
        #expect(reopened.status == 202, "\(reopened.body)")
        try await eventually("the second awaiting-approval status", within: .seconds(60)) { !world.states("kiln", abandoned).isEmpty }
        let closed = try await world.send(kiln, pullRequest(.closed))
        #expect(closed.status == 200, "\(closed.body)")
        #expect((closed.json["ignored"] as? String)?.contains("closed; cancelled 1 build") == true, "\(closed.body)")
        try await eventually("the closed pull request's status to end (the reporter idles 30 s unless rung)", within: .seconds(10)) { world.states("kiln", abandoned).count == 2 }
        #expect(world.states("kiln", abandoned) == [words.pending, words.cancelled])
        #expect(world.forge.statuses.last { $0.sha == abandoned }?.description == "cancelled: the pull request was closed")
        #expect(world.forge.refusals.isEmpty, "\(world.forge.refusals)")
    }

    @Test(.timeLimit(.minutes(2)))
    func controlAPICancelsAndRunsAgain() async throws {
        let world = try await ForgeWorld.make(.gitea)
        defer { Task { await world.close() } }
        let marker = String(UInt64.random(in: 1_000_000_000...9_999_999_999))
        try TestFlake(packages: ["slow": "echo slow-\(marker); $bb sleep 300; true"]).write(to: world.origin.path)
        try world.origin.write(".kiln.yml", "jobs:\n  slow:\n    build: .#slow\n")
        let sha = try world.origin.commit("a slow build")
        let kiln = try await KilnInstance.start(config: world.configPath)
        defer { Task { await kiln.stop() } }
        let admin = [("Authorization", "Bearer \(ForgeWorld.admin)")]

        let pushed = try await world.send(kiln, ForgePayloads.push(.gitea, repository: world.repository, branch: "main", sha: sha, before: nil))
        let first = try #require(pushed.json["build_id"] as? Int)
        try await eventually("the slow builder to run", within: .seconds(60)) { !Processes.matching("slow-\(marker)").isEmpty }
        #expect(try await HTTPTestClient.send("POST", "\(kiln.url)/api/v1/builds/\(first)/cancel").status == 401)
        let cancelled = try await HTTPTestClient.send("POST", "\(kiln.url)/api/v1/builds/\(first)/cancel", headers: admin)
        #expect(cancelled.status == 200, "\(cancelled.body)")
        try await eventually("the cancelled statuses (the reporter idles 30 s unless rung)", within: .seconds(10)) {
            world.states("kiln", sha).last == "error" && world.states("kiln/slow", sha).last == "error"
        }
        #expect(world.forge.statuses.last { $0.context == "kiln/slow" }?.description == "cancelled")
        try await eventually("the slow builder to be gone", within: .seconds(15)) { Processes.matching("slow-\(marker)").isEmpty }
        #expect((try await kiln.build(first))["state"] as? String == "cancelled")
        let again = try await HTTPTestClient.send("POST", "\(kiln.url)/api/v1/builds/\(first)/cancel", headers: admin)
        #expect(again.status == 409, "\(again.body)")

        let rerun = try await HTTPTestClient.send("POST", "\(kiln.url)/api/v1/builds/\(first)/rerun", headers: admin)
        #expect(rerun.status == 202, "\(rerun.body)")
        let second = try #require(Int((rerun.json["url"] as? String ?? "").split(separator: "/").last ?? ""))
        #expect((try await kiln.build(second))["rerun_of"] as? Int == first)
        try await eventually("the re-run's builder to run", within: .seconds(60)) { !Processes.matching("slow-\(marker)").isEmpty }
        #expect(try await HTTPTestClient.send("POST", "\(kiln.url)/api/v1/builds/\(second)/cancel", headers: admin).status == 200)
        try await eventually("the re-run to end cancelled", within: .seconds(15)) {
            (try? await kiln.build(second))?["state"] as? String == "cancelled"
        }
        try await eventually("the re-run's builder to be gone", within: .seconds(15)) { Processes.matching("slow-\(marker)").isEmpty }
        #expect(world.forge.refusals.isEmpty, "\(world.forge.refusals)")
    }
}
