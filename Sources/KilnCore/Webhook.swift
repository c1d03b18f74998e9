import Foundation
import KilnPipeline

/// One webhook request as received: raw headers and the raw body, unparsed.
public struct WebhookDelivery: Sendable {
    /// Header fields in arrival order.
    public var headers: [(name: String, value: String)]
    /// The exact bytes of the body; signatures are computed over these.
    public var body: [UInt8]
    /// When it arrived; signature schemes with timestamps are checked against it.
    public var receivedAt: Date
    /// HMAC-SHA256 of `body` under the forge's raw-body secrets, computed by the edge as the
    /// body streamed in; nil when the edge did not (the adapter then computes them itself).
    public var bodyMACs: [Secret: [UInt8]]?

    /// Creates a delivery.
    public init(
        headers: [(name: String, value: String)], body: [UInt8], receivedAt: Date = Date(), bodyMACs: [Secret: [UInt8]]? = nil
    ) {
        self.headers = headers
        self.body = body
        self.receivedAt = receivedAt
        self.bodyMACs = bodyMACs
    }

    /// The first header with this name, compared case-insensitively; nil when absent.
    public func header(_ name: String) -> String? {
        headers.first { Self.sameASCIIName($0.name, name) }?.value
    }

    /// Header names compared ASCII case-insensitively, byte by byte (Foundation's comparison
    /// is locale-aware and shows in intake's profile).
    static func sameASCIIName(_ a: String, _ b: String) -> Bool {
        guard a.utf8.count == b.utf8.count else { return false }
        var left = a.utf8.makeIterator()
        var right = b.utf8.makeIterator()
        while true {
            switch (left.next(), right.next()) {
            case (nil, nil): return true
            case (let x?, let y?):
                guard x == y || (x | 0x20 == y | 0x20 && (x | 0x20) >= 0x61 && (x | 0x20) <= 0x7A) else { return false }
            default: return false
            }
        }
    }
}

/// What a forge's webhook means for Kiln.
public enum WebhookOutcome: Sendable, Equatable {
    /// Things to do, in order (a Bitbucket push can move several refs at once).
    case events([ForgeEvent])
    /// Nothing to build; the reason is returned to the forge with a 200.
    case ignored(reason: String)

    /// One push to build.
    public static func trigger(_ push: PushEvent) -> WebhookOutcome { .events([.push(push)]) }
}

/// Something that happened at a forge that Kiln acts on.
public enum ForgeEvent: Sendable, Equatable {
    /// A branch or tag was pushed.
    case push(PushEvent)
    /// A pull request was opened, reopened, or got new commits.
    case pullRequest(PullRequestEvent)
    /// A pull request was closed or merged: its builds are cancelled.
    case pullRequestClosed(PullRequestClosedEvent)
    /// Someone asked the forge to run a commit's build again (GitHub check run re-run).
    case rerun(RerunRequest)
    /// A maintainer approved a fork's commit from the forge (GitHub check run action).
    case approve(ApproveRequest)
}

/// A maintainer's approval of a fork pull request's head commit, given at the forge.
public struct ApproveRequest: Sendable, Equatable {
    /// `owner/name`.
    public var repository: String
    /// The exact commit approved.
    public var sha: String
    /// Who approved (the forge account).
    public var approver: String

    /// Creates a request.
    public init(repository: String, sha: String, approver: String) {
        self.repository = repository
        self.sha = sha
        self.approver = approver
    }
}

/// A pull request that needs a build.
public struct PullRequestEvent: Sendable, Equatable {
    /// Why it builds.
    public enum Action: String, Sendable, Hashable {
        /// Opened.
        case opened
        /// New commits on the source branch.
        case updated
        /// Reopened.
        case reopened
    }

    /// The forge's id of this delivery.
    public var deliveryID: String
    /// The target repository, `owner/name`.
    public var repository: String
    /// The pull request's number (GitLab's iid).
    public var number: Int
    /// Why it builds.
    public var action: Action
    /// The head commit; a 12-character prefix on Bitbucket Cloud, resolved when fetched.
    public var headSHA: String
    /// The source branch (short name).
    public var headBranch: String
    /// The target branch (short name).
    public var baseBranch: String
    /// Whether the source is a fork of the target repository.
    public var isFork: Bool
    /// The fork's `owner/name`, for forges without pull request refs (Bitbucket Cloud).
    public var headRepository: String?

    /// Creates an event.
    public init(
        deliveryID: String, repository: String, number: Int, action: Action, headSHA: String, headBranch: String,
        baseBranch: String, isFork: Bool, headRepository: String? = nil
    ) {
        self.deliveryID = deliveryID
        self.repository = repository
        self.number = number
        self.action = action
        self.headSHA = headSHA
        self.headBranch = headBranch
        self.baseBranch = baseBranch
        self.isFork = isFork
        self.headRepository = headRepository
    }
}

/// A pull request that was closed or merged.
public struct PullRequestClosedEvent: Sendable, Equatable {
    /// The target repository, `owner/name`.
    public var repository: String
    /// The pull request's number.
    public var number: Int
    /// Whether it was merged rather than closed.
    public var merged: Bool

    /// Creates an event.
    public init(repository: String, number: Int, merged: Bool) {
        self.repository = repository
        self.number = number
        self.merged = merged
    }
}

/// A request from the forge to build a commit again.
public struct RerunRequest: Sendable, Equatable {
    /// The forge's id of this delivery.
    public var deliveryID: String
    /// `owner/name`.
    public var repository: String
    /// The commit whose build runs again.
    public var sha: String

    /// Creates a request.
    public init(deliveryID: String, repository: String, sha: String) {
        self.deliveryID = deliveryID
        self.repository = repository
        self.sha = sha
    }
}

/// A push of a branch or tag, normalised from any forge.
public struct PushEvent: Sendable, Equatable {
    /// The forge's id of this delivery; redeliveries repeat it.
    public var deliveryID: String
    /// `owner/name` as the forge writes it.
    public var repository: String
    /// The pushed ref.
    public var ref: GitRef
    /// Full commit id after the push (40 or 64 hex characters).
    public var sha: String
    /// The ref's commit before the push; nil when the ref is new or the forge did not say.
    public var before: String?

    /// Creates a push event.
    public init(deliveryID: String, repository: String, ref: GitRef, sha: String, before: String? = nil) {
        self.deliveryID = deliveryID
        self.repository = repository
        self.ref = ref
        self.sha = sha
        self.before = before
    }
}

/// Why a webhook was refused. Each case maps to one HTTP status at the edge.
public enum WebhookError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The signature header is absent (401).
    case missingSignature(header: String)
    /// The signature does not verify with any configured secret (401).
    case badSignature(header: String)
    /// The body or a required header is not what the forge documents (400).
    case malformed(String)

    public var description: String {
        switch self {
        case .missingSignature(let header): return "missing \(header) header; configure the webhook with a secret"
        case .badSignature(let header):
            return "\(header) does not match the body with any configured webhook secret"
        case .malformed(let detail): return "malformed webhook: \(detail)"
        }
    }
}

