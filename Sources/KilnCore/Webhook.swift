import KilnPipeline

/// One webhook request as received: raw headers and the raw body, unparsed.
public struct WebhookDelivery: Sendable {
    /// Header fields in arrival order.
    public var headers: [(name: String, value: String)]
    /// The exact bytes of the body; signatures are computed over these.
    public var body: [UInt8]

    /// Creates a delivery.
    public init(headers: [(name: String, value: String)], body: [UInt8]) {
        self.headers = headers
        self.body = body
    }

    /// The first header with this name, compared case-insensitively; nil when absent.
    public func header(_ name: String) -> String? {
        headers.first { $0.name.caseInsensitiveCompare(name) == .orderedSame }?.value
    }
}

/// What a forge's webhook means for Kiln.
public enum WebhookOutcome: Sendable, Equatable {
    /// Build something.
    case trigger(PushEvent)
    /// Nothing to build; the reason is returned to the forge with a 200.
    case ignored(reason: String)
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

/// Commit ids are hex strings of 40 (SHA-1) or 64 (SHA-256) characters.
public enum CommitID {
    /// Whether `text` is a full, lowercase commit id.
    public static func isValid(_ text: String) -> Bool {
        (text.utf8.count == 40 || text.utf8.count == 64)
            && text.utf8.allSatisfy { (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) || (UInt8(ascii: "a")...UInt8(ascii: "f")).contains($0) }
    }

    /// Whether `text` is all zeros, which forges use for "no commit" (ref created or deleted).
    public static func isZero(_ text: String) -> Bool {
        !text.isEmpty && text.utf8.allSatisfy { $0 == UInt8(ascii: "0") }
    }

    /// The first 7 characters, for messages.
    public static func short(_ sha: String) -> String { String(sha.prefix(7)) }
}
