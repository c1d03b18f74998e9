import Foundation

/// Webhook payloads and headers written from each forge's documented format (our own, not
/// copies of the fixtures), for end-to-end tests.
public enum ForgePayloads {
    /// A push of `sha` to branch `branch` of `repository`.
    public static func push(_ kind: FakeForge.Kind, repository: String, branch: String, sha: String, before: String?) -> (event: String, body: [UInt8]) {
        let previous = before ?? String(repeating: "0", count: 40)
        let slug = repository.split(separator: "/").last.map(String.init) ?? repository
        let owner = repository.split(separator: "/").first.map(String.init) ?? repository
        let json: String
        switch kind {
        case .github, .gitea:
            json = #"{"ref":"refs/heads/\#(branch)","before":"\#(previous)","after":"\#(sha)","created":\#(before == nil),"deleted":false,"repository":{"id":1,"full_name":"\#(repository)"},"head_commit":{"id":"\#(sha)"}}"#
        case .gitlab:
            json = #"{"object_kind":"push","event_name":"push","ref":"refs/heads/\#(branch)","before":"\#(previous)","after":"\#(sha)","checkout_sha":"\#(sha)","project_id":1,"project":{"id":1,"path_with_namespace":"\#(repository)"}}"#
        case .bitbucketCloud:
            let old = before.map { #"{"type":"branch","name":"\#(branch)","target":{"hash":"\#($0)"}}"# } ?? "null"
            json = #"{"repository":{"full_name":"\#(repository)","uuid":"{repo-1}"},"push":{"changes":[{"new":{"type":"branch","name":"\#(branch)","target":{"hash":"\#(sha)"}},"old":\#(old),"created":\#(before == nil),"closed":false}]}}"#
        case .bitbucketServer:
            json = #"{"eventKey":"repo:refs_changed","repository":{"id":1,"slug":"\#(slug)","project":{"key":"\#(owner)"}},"changes":[{"ref":{"id":"refs/heads/\#(branch)","displayId":"\#(branch)","type":"BRANCH"},"refId":"refs/heads/\#(branch)","fromHash":"\#(previous)","toHash":"\#(sha)","type":"\#(before == nil ? "ADD" : "UPDATE")"}]}"#
        }
        return (pushEvent[kind]!, Array(json.utf8))
    }

    /// What happened to a pull request.
    public enum PullRequestAction: Sendable {
        case opened, closed
    }

    /// A pull request from `fork` (owner/name) branch `branch` into `base` of `repository`, opened
    /// or closed without merging.
    public static func pullRequest(
        _ kind: FakeForge.Kind, _ action: PullRequestAction = .opened, repository: String, number: Int, head: String, branch: String,
        base: String, fork: String
    ) -> (event: String, body: [UInt8]) {
        let opened = action == .opened
        let json: String
        switch kind {
        case .github:
            json = #"{"action":"\#(opened ? "opened" : "closed")","number":\#(number),"pull_request":{"number":\#(number),"head":{"ref":"\#(branch)","sha":"\#(head)","repo":{"id":2,"full_name":"\#(fork)"}},"base":{"ref":"\#(base)","sha":"\#(head)","repo":{"id":1,"full_name":"\#(repository)"}},"merged":false},"repository":{"id":1,"full_name":"\#(repository)"}}"#
        case .gitea:
            json = #"{"action":"\#(opened ? "opened" : "closed")","number":\#(number),"pull_request":{"head":{"ref":"\#(branch)","sha":"\#(head)","repo_id":2,"repo":{"id":2,"full_name":"\#(fork)"}},"base":{"ref":"\#(base)","sha":"\#(head)","repo_id":1,"repo":{"id":1,"full_name":"\#(repository)"}},"merged":false},"repository":{"id":1,"full_name":"\#(repository)"}}"#
        case .gitlab:
            json = #"{"object_kind":"merge_request","project":{"id":1,"path_with_namespace":"\#(repository)"},"object_attributes":{"action":"\#(opened ? "open" : "close")","iid":\#(number),"last_commit":{"id":"\#(head)"},"source_branch":"\#(branch)","target_branch":"\#(base)","source_project_id":2,"target_project_id":1,"source":{"path_with_namespace":"\#(fork)"}}}"#
        case .bitbucketCloud:
            // Bitbucket Cloud sends a 12-character prefix of the head commit.
            json = #"{"repository":{"full_name":"\#(repository)","uuid":"{repo-1}"},"pullrequest":{"id":\#(number),"state":"\#(opened ? "OPEN" : "DECLINED")","source":{"branch":{"name":"\#(branch)"},"commit":{"hash":"\#(head.prefix(12))"},"repository":{"full_name":"\#(fork)","uuid":"{repo-2}"}},"destination":{"branch":{"name":"\#(base)"},"commit":{"hash":"000000000000"},"repository":{"full_name":"\#(repository)","uuid":"{repo-1}"}}}}"#
        case .bitbucketServer:
            let parts = repository.split(separator: "/").map(String.init)
            let forkParts = fork.split(separator: "/").map(String.init)
            json = #"{"eventKey":"\#(opened ? "pr:opened" : "pr:declined")","pullRequest":{"id":\#(number),"fromRef":{"displayId":"\#(branch)","latestCommit":"\#(head)","repository":{"id":2,"slug":"\#(forkParts[1])","project":{"key":"\#(forkParts[0])"}}},"toRef":{"displayId":"\#(base)","latestCommit":"\#(head)","repository":{"id":1,"slug":"\#(parts[1])","project":{"key":"\#(parts[0])"}}},"createdDate":"2026-11-22T12:00:00+0000"}}"#
        }
        let event = switch kind {
        case .github, .gitea: "pull_request"
        case .gitlab: "Merge Request Hook"
        case .bitbucketCloud: opened ? "pullrequest:created" : "pullrequest:rejected"
        case .bitbucketServer: opened ? "pr:opened" : "pr:declined"
        }
        return (event, Array(json.utf8))
    }

    /// The headers of a delivery, signed the way `kind` signs.
    public static func headers(_ kind: FakeForge.Kind, event: String, body: [UInt8], secret: String, delivery: String = UUID().uuidString)
        -> [(name: String, value: String)]
    {
        let json: (name: String, value: String) = ("Content-Type", "application/json")
        switch kind {
        case .github:
            return [json, ("X-GitHub-Event", event), ("X-GitHub-Delivery", delivery), ("X-Hub-Signature-256", WebhookSigner.github(body, secret: secret))]
        case .gitlab:
            return [json, ("X-Gitlab-Event", event), ("X-Gitlab-Event-UUID", delivery), ("X-Gitlab-Token", secret)]
        case .bitbucketCloud:
            return [json, ("X-Event-Key", event), ("X-Request-UUID", delivery), ("X-Hub-Signature", "sha256=" + WebhookSigner.hex(body, secret: secret))]
        case .bitbucketServer:
            return [json, ("X-Event-Key", event), ("X-Request-Id", delivery), ("X-Hub-Signature", "sha256=" + WebhookSigner.hex(body, secret: secret))]
        case .gitea:
            return [json, ("X-Gitea-Event", event), ("X-Gitea-Delivery", delivery), ("X-Gitea-Signature", WebhookSigner.hex(body, secret: secret))]
        }
    }

    /// Where each forge keeps a pull request's head in the target repository (nil: a fork's branch).
    public static func pullRequestRef(_ kind: FakeForge.Kind, number: Int) -> String? {
        switch kind {
        case .github, .gitea: return "refs/pull/\(number)/head"
        case .gitlab: return "refs/merge-requests/\(number)/head"
        case .bitbucketServer: return "refs/pull-requests/\(number)/from"
        case .bitbucketCloud: return nil
        }
    }

    static let pushEvent: [FakeForge.Kind: String] = [
        .github: "push", .gitea: "push", .gitlab: "Push Hook", .bitbucketCloud: "repo:push", .bitbucketServer: "repo:refs_changed",
    ]
}
