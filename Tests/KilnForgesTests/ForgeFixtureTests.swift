import Foundation
import KilnCore
import KilnPipeline
import KilnTesting
import Testing

@testable import KilnForges

/// One line per event, so that the table below reads like the fixtures.
func describe(_ outcome: WebhookOutcome) -> String {
    switch outcome {
    case .ignored(let reason): return "ignored: \(reason)"
    case .events(let events):
        return events.map { event -> String in
            switch event {
            case .push(let push):
                return "push \(push.repository) \(push.ref.fullName) \(push.sha.prefix(12)) before \(push.before?.prefix(12) ?? "-")"
            case .pullRequest(let pull):
                let fork = pull.isFork ? " fork \(pull.headRepository ?? "?")" : ""
                return "pr \(pull.action.rawValue) \(pull.repository)#\(pull.number) \(pull.headSHA.prefix(12)) \(pull.headBranch)→\(pull.baseBranch)\(fork)"
            case .pullRequestClosed(let closed):
                return "pr \(closed.merged ? "merged" : "closed") \(closed.repository)#\(closed.number)"
            case .rerun(let request): return "rerun \(request.repository) \(request.sha.prefix(12))"
            case .approve(let request): return "approve \(request.repository) \(request.sha.prefix(12)) by \(request.approver)"
            }
        }.joined(separator: "; ")
    }
}

@Suite struct ForgeFixtureTests {
    /// Every payload in ../shared/fixtures/forges and what it must become.
    static let table: [(forge: String, fixture: String, event: String?, expected: String)] = [
        ("github", "github/push.json", "push", "push Codertocat/Hello-World refs/heads/master 199eddf46df5 before a10867b14bb7"),
        ("github", "github/push.branch-created.json", "push", "push Codertocat/Hello-World refs/heads/master 6113728f27ae before -"),
        ("github", "github/push.tag-created.json", "push", "push bradrydzewski/drone-test-go refs/tags/v0.0.1 d2b75aa7797e before -"),
        ("github", "github/push.branch-deleted.json", "push", "ignored: push deleted branch 'feature-branch'; nothing to build"),
        ("github", "github/push.tag-deleted.json", "push", "ignored: push deleted tag 'simple-tag'; nothing to build"),
        ("github", "github/ping.json", "ping", "ignored: ping received; the webhook is set up"),
        ("github", "github/ping.app.json", "ping", "ignored: ping received; the webhook is set up"),
        ("github", "github/pull_request.opened.json", "pull_request", "pr opened Codertocat/Hello-World#2 ec26c3e57ca3 changes→master"),
        ("github", "github/pull_request.synchronize.json", "pull_request", "pr updated Codertocat/Hello-World#2 ec26c3e57ca3 changes→master"),
        ("github", "github/pull_request.reopened.json", "pull_request", "pr reopened Codertocat/Hello-World#2 ec26c3e57ca3 changes→master"),
        ("github", "github/pull_request.closed.json", "pull_request", "pr closed Codertocat/Hello-World#2"),
        ("gitlab", "gitlab/push.json", nil, "push mike/diaspora refs/heads/master da1560886d4f before 95790bf891e7"),
        ("gitlab", "gitlab/push.gitlab-com.json", "Push Hook", "push gitlab-org/hello-world refs/heads/master 2adc9465c4ed before 9217710ce8c7"),
        ("gitlab", "gitlab/tag_push.json", nil, "push jsmith/example refs/tags/v1.0.0 82b3d5ae55f7 before -"),
        ("gitlab", "gitlab/push.branch-deleted.json", "Push Hook", "ignored: push deleted branch 'feature'; nothing to build"),
        ("gitlab", "gitlab/merge_request.json", nil, "pr opened gitlabhq/gitlab-test#1 da1560886d4f ms-viewport→master"),
        ("gitlab", "gitlab/merge_request.open.json", nil, "pr opened demoaccount2-commits-group/test_ci_tmp#3 2f7670508b77 real6543-main-patch-42541→main"),
        ("gitlab", "gitlab/merge_request.update.json", nil, "pr updated anbraten/woodpecker#3 c136499ec574 anbraten-main-patch-05373→main"),
        ("gitlab", "gitlab/merge_request.update-no-new-commits.json", "Merge Request Hook", "ignored: merge request !3 was edited; its commits did not change"),
        ("gitlab", "gitlab/merge_request.reopen.json", "Merge Request Hook", "pr reopened gitlab-org/hello-world#1 c4c79227ed61 feature→master"),
        ("gitlab", "gitlab/merge_request.close.json", "Merge Request Hook", "pr closed anbraten/woodpecker-test#4"),
        ("gitlab", "gitlab/merge_request.merge.json", "Merge Request Hook", "pr merged anbraten/woodpecker-test#4"),
        ("bitbucket-cloud", "bitbucket-cloud/repo_push.json", nil, "push brydzewski/foo refs/heads/master 141977fedf5c before 40e7580cf113"),
        ("bitbucket-cloud", "bitbucket-cloud/repo_push.branch-created.json", nil, "push brydzewski/foo refs/heads/develop 141977fedf5c before -"),
        ("bitbucket-cloud", "bitbucket-cloud/repo_push.tag-created.json", nil, "push brydzewski/foo refs/tags/feature/x 141977fedf5c before -"),
        ("bitbucket-cloud", "bitbucket-cloud/repo_push.branch-deleted.json", nil, "ignored: push only deleted refs; nothing to build"),
        ("bitbucket-cloud", "bitbucket-cloud/repo_push.atlassian-doc-example.json", nil, "push team_name/repo_name refs/heads/name-of-branch 709d658dc5b6 before 1e65c05c1d51"),
        ("bitbucket-cloud", "bitbucket-cloud/pullrequest_created.json", nil, "pr opened brydzewski/foo#1 507a576e59b3 develop→master"),
        ("bitbucket-cloud", "bitbucket-cloud/pullrequest_updated.json", nil, "pr updated brydzewski/foo#1 0704fc5beccc develop→master"),
        ("bitbucket-cloud", "bitbucket-cloud/pullrequest_fulfilled.json", nil, "pr merged brydzewski/foo#1"),
        ("bitbucket-cloud", "bitbucket-cloud/pullrequest_rejected.json", nil, "pr closed brydzewski/foo#2"),
        ("bitbucket-cloud", "bitbucket-cloud/pullrequest_created.atlassian-doc-example.json", nil, "pr opened team_name/repo_name#1 d3022fc0ca3d branch2→master"),
        ("bitbucket-server", "bitbucket-server/repo_refs_changed.json", nil, "push DEV/deployment-automation refs/heads/renovate-all 76797d54bca8 before e0e15221b987"),
        ("bitbucket-server", "bitbucket-server/repo_refs_changed.tag-created.json", nil, "push PRJ/my-repo refs/tags/v1.1.0 823b2230a560 before -"),
        ("bitbucket-server", "bitbucket-server/repo_refs_changed.branch-deleted.json", nil, "ignored: push only deleted refs; nothing to build"),
        ("bitbucket-server", "bitbucket-server/pr_opened.json", nil, "pr opened ~gopher/webhook-test#5 32a0b8a740c2 feature/wip→master"),
        ("bitbucket-server", "bitbucket-server/pr_opened.fork.json", nil, "pr opened DEV/deployment-automation#114 716e510cecbe master→master fork ~JOHN.DOE_EXAMPLE.COM/deployment-automation"),
        ("bitbucket-server", "bitbucket-server/pr_opened.iso-dates.json", "pr:opened", "pr opened PRJ/my-repo#2 208b0a5c05ed develop→master"),
        ("bitbucket-server", "bitbucket-server/pr_from_ref_updated.json", nil, "pr updated PRJ/my-repo#2 c00d0f269a98 feature-2→master"),
        ("bitbucket-server", "bitbucket-server/pr_merged.json", nil, "pr merged DEV/deployment-automation#111"),
        ("bitbucket-server", "bitbucket-server/pr_declined.json", "pr:declined", "pr closed ~gopher/webhook-test#2"),
        ("gitea", "gitea/push.json", nil, "push example/example refs/heads/master 67b56589a451 before -"),
        ("gitea", "gitea/push.update.json", nil, "push gogits/hello-world refs/heads/master 4522cbcefc20 before 9836a96a253c"),
        ("gitea", "gitea/delete.json", nil, "ignored: a branch or tag was deleted; nothing to build"),
        ("gitea", "gitea/pull_request.json", nil, "pr opened example/example#2 48e773f892a8 master→master fork example2/example"),
        ("gitea", "gitea/pull_request.opened.json", nil, "pr opened jcitizen/my-repo#1 2eba238e3360 feature→master"),
        ("gitea", "gitea/pull_request.synchronized.json", nil, "pr updated jcitizen/my-repo#1 2eba238e3360 feature→master"),
        ("gitea", "gitea/pull_request.merged.json", "pull_request", "pr merged anbraten/test-repo#1"),
        ("forgejo", "forgejo/push.json", nil, "push gordon/hello-world refs/heads/main ef98532add3b before 4b2626259b5a"),
        ("forgejo", "forgejo/push.branch-created.json", nil, "push meisam/woodpecktester refs/heads/fdsafdsa 28c3613ae626 before -"),
        ("forgejo", "forgejo/pull_request.opened.json", nil, "pr opened gordon/hello-world#1 0d1a26e67d8f feature/changes→main fork ?"),  // trimmed: no head repository, so untrusted
        ("forgejo", "forgejo/pull_request.synchronized.json", nil, "pr updated Test-CI/multi-line-secrets#2 788ed8d02d3b test-patch-1→main"),
        ("forgejo", "forgejo/pull_request.reopened.json", nil, "pr reopened test_it/test_ci_thing#1 36b5813240a9 6543-patch-1→main"),
        ("forgejo", "forgejo/pull_request.closed.json", nil, "pr closed anbraten/test-repo#1"),
        ("forgejo", "forgejo/pull_request.merged.json", nil, "pr merged anbraten/test-repo#1"),
    ]

    @Test(arguments: table)
    func fixtureDecodes(forge: String, fixture: String, event: String?, expected: String) throws {
        let adapter = FixtureForge.make(forge)
        #expect(describe(try adapter.forge.receive(adapter.delivery(fixture, event: event))) == expected)
    }

    /// Every fixture file is in the table: a new fixture cannot be forgotten.
    @Test func everyFixtureIsInTheTable() throws {
        var files: Set<String> = []
        for forge in ["github", "gitlab", "bitbucket-cloud", "bitbucket-server", "gitea", "forgejo"] {
            for file in try FileManager.default.contentsOfDirectory(atPath: "\(Fixtures.directory)/\(forge)")
            where file.hasSuffix(".json") && !file.hasSuffix(".headers.json") {
                files.insert("\(forge)/\(file)")
            }
        }
        #expect(files == Set(Self.table.map(\.fixture)))
    }

    @Test func formEncodedGitHubPushDecodes() throws {
        let json = try Fixtures.body("github/push.json")
        var allowed = CharacterSet.alphanumerics
        allowed.insert(charactersIn: "-._~")
        let form = Array(("payload=" + String(decoding: json, as: UTF8.self).addingPercentEncoding(withAllowedCharacters: allowed)!).utf8)
        let forge = GitHubForge(settings: .init(apiURL: "http://127.0.0.1:1", webhookSecrets: [Secret(FixtureForge.secret)], token: nil))
        var headers = WebhookSigner.githubHeaders(event: "push", body: form, secret: FixtureForge.secret, delivery: "d")
        headers.removeAll { $0.name == "Content-Type" }
        headers.append(("Content-Type", "application/x-www-form-urlencoded"))
        #expect(describe(try forge.receive(WebhookDelivery(headers: headers, body: form))).hasPrefix("push Codertocat/Hello-World"))
    }

    @Test(arguments: [
        ("{not json", "malformed webhook: push payload is not what the forge documents: body is not valid JSON"),
        (#"{"ref":"refs/heads/main","repository":{"full_name":"a/b"}}"#, "malformed webhook: push payload is not what the forge documents: missing field 'after'"),
        (#"{"ref":"refs/heads/main","after":"xyz","repository":{"full_name":"a/b"}}"#, "malformed webhook: push 'after' is not a commit id: xyz"),
    ])
    func malformedPushIsRejected(body: String, message: String) {
        let bytes = Array(body.utf8)
        let forge = GitHubForge(settings: .init(apiURL: "http://127.0.0.1:1", webhookSecrets: [Secret(FixtureForge.secret)], token: nil))
        let headers = WebhookSigner.githubHeaders(event: "push", body: bytes, secret: FixtureForge.secret)
        do {
            _ = try forge.receive(WebhookDelivery(headers: headers, body: bytes))
            Issue.record("expected a malformed-payload error")
        } catch {
            #expect(error.description == message)
        }
    }

    @Test func gitHubCheckRunActions() throws {
        func checkRun(_ action: String, identifier: String?) throws -> String {
            var payload: [String: Any] = [
                "action": action, "check_run": ["head_sha": String(repeating: "a", count: 40)],
                "repository": ["full_name": "o/r"], "sender": ["login": "maintainer"],
            ]
            if let identifier { payload["requested_action"] = ["identifier": identifier] }
            let body = Array(try JSONSerialization.data(withJSONObject: payload))
            let forge = GitHubForge(settings: .init(apiURL: "http://127.0.0.1:1", webhookSecrets: [Secret(FixtureForge.secret)], token: nil))
            let headers = WebhookSigner.githubHeaders(event: "check_run", body: body, secret: FixtureForge.secret, delivery: "d")
            return describe(try forge.receive(WebhookDelivery(headers: headers, body: body)))
        }
        #expect(try checkRun("rerequested", identifier: nil) == "rerun o/r aaaaaaaaaaaa")
        #expect(try checkRun("requested_action", identifier: "rerun") == "rerun o/r aaaaaaaaaaaa")
        #expect(try checkRun("requested_action", identifier: "approve") == "approve o/r aaaaaaaaaaaa by maintainer")
        #expect(try checkRun("created", identifier: nil) == "ignored: check_run action 'created' starts nothing")
    }

    @Test func gitTestDeliveryIsNotBuilt() throws {
        let body = Array(#"{"ref":"refs/heads/main","before":"0000000000000000000000000000000000000000","after":"0000000000000000000000000000000000000000","repository":{"full_name":"o/r"},"head_commit":{"message":"This is a fake commit for webhook push test"}}"#.utf8)
        let forge = FixtureForge.make("gitea")
        let delivery = forge.delivery(body, event: "push")
        #expect(describe(try forge.forge.receive(delivery)) == "ignored: test delivery or deletion of branch 'main'; nothing to build")
    }

    /// A pull request that does not say where its head lives is treated as a fork: it waits for approval.
    @Test(arguments: [
        ("github", "pull_request", #"{"action":"opened","number":1,"pull_request":{"head":{"ref":"f","sha":"\#(String(repeating: "a", count: 40))"},"base":{"ref":"main","sha":"\#(String(repeating: "b", count: 40))","repo":{"id":1,"full_name":"o/r"}}},"repository":{"id":1,"full_name":"o/r"}}"#),
        ("bitbucket-cloud", "pullrequest:created", #"{"pullrequest":{"id":1,"source":{"branch":{"name":"f"},"commit":{"hash":"aaaaaaaaaaaa"},"repository":{"full_name":"o/r"}},"destination":{"branch":{"name":"main"},"commit":{"hash":"bbbbbbbbbbbb"},"repository":{"full_name":"o/r"}}},"repository":{"full_name":"o/r"}}"#),
        ("bitbucket-server", "pr:opened", #"{"pullRequest":{"id":1,"fromRef":{"displayId":"f","latestCommit":"\#(String(repeating: "a", count: 40))","repository":{"slug":"r","project":{"key":"O"}}},"toRef":{"displayId":"main","latestCommit":"\#(String(repeating: "b", count: 40))","repository":{"slug":"r","project":{"key":"O"}}}}}"#),
    ])
    func unknownHeadRepositoryIsAFork(kind: String, event: String, body: String) throws {
        let forge = FixtureForge.make(kind)
        let outcome = try forge.forge.receive(forge.delivery(Array(body.utf8), event: event))
        #expect(describe(outcome).contains(" fork "), "\(describe(outcome))")
    }

    @Test func sha256RepositoriesAreAccepted() throws {
        let sha = String(repeating: "ab", count: 32)
        let body = Array(#"{"ref":"refs/heads/main","before":"\#(String(repeating: "0", count: 64))","after":"\#(sha)","repository":{"full_name":"o/r"}}"#.utf8)
        let forge = FixtureForge.make("gitea")
        let delivery = forge.delivery(body, event: "push")
        #expect(describe(try forge.forge.receive(delivery)) == "push o/r refs/heads/main abababababab before -")
    }

    @Test func stateWordsFollowTheDesign() {
        #expect(StatusState.allCases.map(GitHubForge.state) == ["pending", "pending", "success", "failure", "error", "error", "success"])
        #expect(StatusState.allCases.map(GitLabForge.state) == ["pending", "running", "success", "failed", "canceled", "failed", "success"])
        #expect(StatusState.allCases.map(BitbucketCloudForge.state) == ["INPROGRESS", "INPROGRESS", "SUCCESSFUL", "FAILED", "STOPPED", "FAILED", "SUCCESSFUL"])
        #expect(StatusState.allCases.map(BitbucketServerForge.state) == ["INPROGRESS", "INPROGRESS", "SUCCESSFUL", "FAILED", "CANCELLED", "FAILED", "SUCCESSFUL"])
        #expect(StatusState.allCases.map(GiteaForge.state) == ["pending", "pending", "success", "failure", "error", "error", "success"])
    }

    @Test func bitbucketKeysFitFortyCharacters() {
        #expect(BitbucketCloudForge.key("kiln/tests") == "kiln/tests")
        let long = BitbucketCloudForge.key("kiln/a-very-long-job-name (aarch64-darwin)")
        #expect(long.count == 40)
        #expect(long == BitbucketCloudForge.key("kiln/a-very-long-job-name (aarch64-darwin)"))
        #expect(long != BitbucketCloudForge.key("kiln/a-very-long-job-name (x86_64-darwin)"))
    }
}
