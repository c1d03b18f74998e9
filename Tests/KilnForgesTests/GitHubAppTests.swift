import Foundation
import KilnCore
import KilnTesting
import Testing

@testable import KilnForges

/// A GitHub App's credentials against the fake: it verifies the JWT with the App's public key,
/// mints installation tokens that expire, and refuses revoked ones.
@Suite struct GitHubAppTests {
    static let repository = "octo/hello"
    static let sha = String(repeating: "ab", count: 20)
    static let keys = Result { try FakeForge.appKeyPair() }

    func forge(_ fake: FakeForge, appID: String = "123", privateKeyPEM: String? = nil, checkRuns: Bool = false) throws -> GitHubForge {
        let app = try GitHubApp(appID: appID, privateKeyPEM: privateKeyPEM ?? Self.keys.get().privateKeyPEM, apiURL: fake.url)
        return GitHubForge(settings: .init(apiURL: fake.url, webhookSecrets: [], credentials: .app(app), checkRuns: checkRuns))
    }

    func fake(tokenLifetime: TimeInterval = 3600) async throws -> FakeForge {
        try await FakeForge(
            .github, token: "not-the-app's", repositories: [Self.repository], appPublicKeyPEM: Self.keys.get().publicKeyPEM,
            appID: "123", tokenLifetime: tokenLifetime)
    }

    func status(_ state: StatusState, _ description: String = "building", details: String? = nil) -> CommitStatus {
        CommitStatus(context: "kiln", state: state, description: description, targetURL: "http://kiln.test/builds/1", details: details)
    }

    @Test func aVerifiedJWTGetsATokenThatIsCachedUntilShortlyBeforeItExpires() async throws {
        let fake = try await fake()
        defer { Task { await fake.stop() } }
        let github = try forge(fake)
        let commit = CommitRef(repository: Self.repository, sha: Self.sha)
        try await github.post(status(.pending), on: commit)
        try await github.post(status(.succeeded, "2 jobs passed"), on: commit)
        #expect(fake.states("kiln") == ["pending", "success"])
        #expect(fake.tokenExchanges == 1, "the second post reuses the cached installation token")
        #expect(fake.refusals.isEmpty, "\(fake.refusals)")
    }

    @Test func statusesPostedTogetherShareOneExchange() async throws {
        let fake = try await fake()
        defer { Task { await fake.stop() } }
        let github = try forge(fake)
        for round in 0..<2 {
            try await withThrowingTaskGroup(of: Void.self) { group in
                for job in 0..<6 {
                    group.addTask {
                        var status = status(.pending)
                        status.context = "kiln/job-\(job)"
                        try await github.post(status, on: CommitRef(repository: Self.repository, sha: Self.sha))
                    }
                }
                try await group.waitForAll()
            }
            #expect(fake.tokenExchanges == round + 1)
            fake.revokeInstallationTokens()
        }
        #expect(fake.statuses.count == 12)
    }

    @Test func aTokenCloseToExpiryIsReplacedBeforeUse() async throws {
        // Tokens living four minutes are always inside the five-minute margin: each post needs a new one.
        let fake = try await fake(tokenLifetime: 240)
        defer { Task { await fake.stop() } }
        let github = try forge(fake)
        let commit = CommitRef(repository: Self.repository, sha: Self.sha)
        try await github.post(status(.pending), on: commit)
        try await github.post(status(.failed, "1 job failed"), on: commit)
        #expect(fake.states("kiln") == ["pending", "failure"])
        #expect(fake.tokenExchanges == 2)
    }

    @Test func aRevokedTokenIsReplacedOnceAfterA401() async throws {
        let fake = try await fake()
        defer { Task { await fake.stop() } }
        let github = try forge(fake)
        let commit = CommitRef(repository: Self.repository, sha: Self.sha)
        try await github.post(status(.pending), on: commit)
        fake.revokeInstallationTokens()
        try await github.post(status(.succeeded, "done"), on: commit)
        #expect(fake.states("kiln") == ["pending", "success"])
        #expect(fake.tokenExchanges == 2)
        #expect(fake.refusals == ["Bad credentials"], "exactly one refused post, then the retry")
    }

    @Test(arguments: ["wrong key", "wrong app id"])
    func aJWTTheFakeCannotVerifyGetsNoToken(_ mistake: String) async throws {
        let fake = try await fake()
        defer { Task { await fake.stop() } }
        let github = mistake == "wrong key"
            ? try forge(fake, privateKeyPEM: try FakeForge.appKeyPair().privateKeyPEM) : try forge(fake, appID: "999")
        await #expect(throws: ForgeAPIError.self) {
            try await github.post(status(.pending), on: CommitRef(repository: Self.repository, sha: Self.sha))
        }
        #expect(fake.statuses.isEmpty)
        #expect(fake.tokenExchanges == 0)
        #expect(fake.refusals.first == "A JSON web token could not be decoded")
    }

    @Test func checkRunsCarryTheSummaryAndTheActionThatFits() async throws {
        let fake = try await fake()
        defer { Task { await fake.stop() } }
        let github = try forge(fake, checkRuns: true)
        let commit = CommitRef(repository: Self.repository, sha: Self.sha)
        try await github.post(status(.pending, "awaiting approval: a fork's pull request"), on: commit)
        let summary = "## hello failed\n\n| job | outcome |\n|---|---|\n| hello | failed |\n\n```\nerror: builder failed\n```"
        try await github.post(status(.failed, "1 job failed", details: summary), on: commit)
        let runs = fake.statuses
        #expect(runs.map(\.state) == ["queued", "failure"])
        #expect(runs.first?.actions == ["approve"])
        #expect(runs.last?.actions == ["rerun"])
        #expect(runs.last?.summary == summary)
        #expect(runs.last?.description == "1 job failed")
        #expect(fake.checkRunCount == 1, "the second post updates the same check run")
        #expect(fake.refusals.isEmpty, "\(fake.refusals)")
    }
}
