import Foundation

/// Kiln's states for a commit status; each forge maps them to its own words (DESIGN.md §6).
public enum StatusState: String, Sendable, Hashable, Codable, CaseIterable {
    /// Queued, or waiting for approval.
    case pending
    /// Being built; forges without such a state show pending.
    case running
    /// Built.
    case succeeded
    /// The build failed or timed out.
    case failed
    /// Cancelled, superseded, or skipped because a job it needs did not succeed.
    case cancelled
    /// Kiln itself could not do its work (fetch failed, nix broken).
    case errored
    /// Nothing was built on purpose (`[skip ci]`); forges without such a state show success.
    case skipped
}

/// One commit status as Kiln wants it shown.
public struct CommitStatus: Sendable, Hashable, Codable {
    /// `kiln` for the build, `kiln/<job>` for a job.
    public var context: String
    /// The state.
    public var state: StatusState
    /// A short, useful sentence; forges with a limit truncate it.
    public var description: String
    /// The build page.
    public var targetURL: String
    /// A longer account in markdown (outcome, time, outputs, log tail), for forges that show one.
    public var details: String?

    /// Creates a status.
    public init(context: String, state: StatusState, description: String, targetURL: String, details: String? = nil) {
        self.context = context
        self.state = state
        self.description = description
        self.targetURL = targetURL
        self.details = details
    }
}

/// The commit a status is posted on.
public struct CommitRef: Sendable, Hashable {
    /// `owner/name` at the forge.
    public var repository: String
    /// Full commit id.
    public var sha: String
    /// The branch the commit is on (a pull request's source branch), for forges that file
    /// statuses under one; nil when unknown.
    public var branch: String?

    /// Creates a commit reference.
    public init(repository: String, sha: String, branch: String? = nil) {
        self.repository = repository
        self.sha = sha
        self.branch = branch
    }
}

/// Why posting a status failed.
public enum ForgeAPIError: Error, Sendable, Equatable, CustomStringConvertible {
    /// Worth retrying: network error, 5xx or 429. `retryAfter` is the forge's own hint.
    case transient(String, retryAfter: Duration?)
    /// The forge refused the request (4xx other than 429); retrying would not help.
    case rejected(status: Int, body: String)

    public var description: String {
        switch self {
        case .transient(let detail, _): return detail
        case .rejected(let status, let body): return "HTTP \(status): \(body)"
        }
    }
}

/// A forge account Kiln talks to: it verifies and decodes webhooks and posts statuses.
public protocol Forge: Sendable {
    /// Verifies the signature over the raw body, then decodes the event.
    /// Pure: no I/O, no clock. Safe to call concurrently.
    /// - Throws: `WebhookError` for an unsigned, wrongly signed or malformed delivery.
    func receive(_ delivery: WebhookDelivery) throws(WebhookError) -> WebhookOutcome

    /// Posts one commit status. Safe to call concurrently.
    /// - Throws: `ForgeAPIError`; `.transient` is retried by the caller, `.rejected` is not.
    func post(_ status: CommitStatus, on commit: CommitRef) async throws(ForgeAPIError)

    /// The secrets under which the forge signs the raw body with HMAC-SHA256 (GitHub,
    /// Bitbucket, Gitea), so the edge can compute the MACs as the body streams in; empty for
    /// a forge that signs otherwise (GitLab).
    var rawBodySecrets: [Secret] { get }

    /// Reads `repository` (`owner/name`) through the forge's API with Kiln's credentials, a
    /// read-only call (`kiln doctor`). Returns when the forge answered with the repository.
    /// - Throws: `ForgeAPIError` with the forge's answer (401, 404) or the network's failure.
    func checkAccess(to repository: String) async throws(ForgeAPIError)

    /// The repository's default branch, its branches' heads, and its open pull requests updated
    /// at or after `since` (all open ones when nil), read through the forge's API page by page
    /// (at most `ForgeHeads.maxPages` pages of each list). For the reconciler.
    /// - Throws: `ForgeAPIError` with the forge's answer or the network's failure.
    func heads(of repository: String, pullRequestsUpdatedSince since: Date?) async throws(ForgeAPIError) -> ForgeHeads
}

extension Forge {
    /// None by default.
    public var rawBodySecrets: [Secret] { [] }

    /// A forge that cannot be checked says so.
    public func checkAccess(to repository: String) async throws(ForgeAPIError) {
        throw .rejected(status: 0, body: "this forge cannot check its credentials")
    }

    /// A forge that cannot list heads says so.
    public func heads(of repository: String, pullRequestsUpdatedSince since: Date?) async throws(ForgeAPIError) -> ForgeHeads {
        throw .rejected(status: 0, body: "this forge cannot list branches and pull requests")
    }
}
