import Foundation
import KilnCore
import KilnForges
import KilnTesting
import Testing

/// Each forge's adapter lists a repository's heads from a strict fake: the default branch,
/// every branch across pages, open pull requests with their fork, and only those updated
/// since a time when asked.
@Suite struct ForgeHeadsTests {
    static func adapter(_ kind: FakeForge.Kind, _ url: String, token: String) -> any Forge {
        let token = Secret(token)
        switch kind {
        case .github: return GitHubForge(settings: .init(apiURL: url, webhookSecrets: [], token: token))
        case .gitlab: return GitLabForge(settings: .init(url: url, webhookSecrets: [], token: token))
        case .bitbucketCloud: return BitbucketCloudForge(settings: .init(apiURL: url, webhookSecrets: [], token: token))
        case .bitbucketServer: return BitbucketServerForge(settings: .init(url: url, webhookSecrets: [], token: token))
        case .gitea: return GiteaForge(settings: .init(url: url, webhookSecrets: [], token: token))
        }
    }

    @Test(arguments: FakeForge.Kind.allCases)
    func listsBranchesAndOpenPullRequestsAcrossPages(kind: FakeForge.Kind) async throws {
        let repository = kind == .bitbucketServer ? "PRJ/hello" : kind == .gitlab ? "group/hello" : "octo/hello"
        let forge = try await FakeForge(kind, token: "t0ken", repositories: [repository])
        defer { Task { await forge.stop() } }
        func sha(_ n: Int) -> String { String(format: "%040x", n) }
        // More branches than one page of any forge holds.
        let branches = (0..<130).map { (name: $0 == 0 ? "trunk" : "topic/\($0)", sha: sha($0 + 1)) }
        let now = Date()
        let fork = kind == .bitbucketServer ? "~ALICE/hello" : "alice/hello"
        let pulls = [
            FakeForge.PullRequest(number: 3, head: sha(1000), branch: "topic/1", base: "trunk", updatedAt: now.addingTimeInterval(-60)),
            FakeForge.PullRequest(number: 4, head: sha(1001), branch: "idea", base: "trunk", fork: fork, updatedAt: now.addingTimeInterval(-120)),
            FakeForge.PullRequest(number: 5, head: sha(1002), branch: "old", base: "trunk", updatedAt: now.addingTimeInterval(-7200)),
        ]
        forge.setHeads(repository, .init(defaultBranch: "trunk", branches: branches, pullRequests: pulls))
        let adapter = Self.adapter(kind, forge.url, token: "t0ken")

        let heads = try await adapter.heads(of: repository, pullRequestsUpdatedSince: nil)
        #expect(heads.defaultBranch == "trunk")
        #expect(heads.branches == branches.map { BranchHead(name: $0.name, sha: $0.sha) })
        #expect(heads.pullRequests.map(\.number) == [3, 4, 5])
        let first = try #require(heads.pullRequests.first)
        #expect(first.headBranch == "topic/1" && first.baseBranch == "trunk" && !first.isFork)
        #expect(kind == .bitbucketCloud ? first.headSHA == String(sha(1000).prefix(12)) : first.headSHA == sha(1000))
        #expect(heads.pullRequests[1].isFork)
        if kind != .gitlab { #expect(heads.pullRequests[1].headRepository == fork) }
        #expect(heads.pullRequests.allSatisfy { abs(($0.updatedAt ?? .distantPast).timeIntervalSince(now)) < 7300 })
        #expect(forge.refusals.isEmpty, "\(forge.refusals)")
        #expect(forge.reads.filter { $0.contains("branches") }.count >= 2, "branches across at least two pages: \(forge.reads)")

        let recent = try await adapter.heads(of: repository, pullRequestsUpdatedSince: now.addingTimeInterval(-600))
        #expect(recent.pullRequests.map(\.number) == [3, 4])
        #expect(forge.refusals.isEmpty, "\(forge.refusals)")
        #expect(forge.attempts == 0, "reads are not status posts")

        // Wrong credentials: the forge's refusal, not a list.
        await #expect(throws: ForgeAPIError.self) {
            try await Self.adapter(kind, forge.url, token: "wrong").heads(of: repository, pullRequestsUpdatedSince: nil)
        }
    }
}
