import KilnCore
import KilnNix
import KilnPipeline

/// The server's configuration (DESIGN.md §4), read once at start-up and validated.
/// Each component is handed only its own part.
public struct KilnConfiguration: Sendable {
    /// `server`.
    public struct Server: Sendable, Hashable {
        /// Address to listen on.
        public var host: String
        /// Port to listen on; 0 picks a free one.
        public var port: Int
        /// Base of links in statuses and pages.
        public var publicURL: String
        /// Largest webhook body accepted (413 above).
        public var maxBodyBytes: Int
    }

    /// `storage`.
    public struct Storage: Sendable, Hashable {
        /// Database, logs, mirrors, work trees.
        public var dataDirectory: String
        /// Cap on each job's log.
        public var maxLogBytes: Int
        /// Builds (and their logs) older than this are removed by `kiln gc` and the daily collection.
        public var retention: Duration
    }

    /// `nix`.
    public struct Nix: Sendable, Hashable {
        /// How nix is run.
        public var settings: NixSettings
        /// Jobs at once.
        public var maxParallelJobs: Int
        /// Timeouts.
        public var limits: JobLimits
    }

    /// Which API a forge's statuses go to.
    public enum StatusAPI: String, Sendable, Hashable, CaseIterable {
        /// The commit status API.
        case statuses
        /// Nowhere: statuses are recorded and shown on the build page only.
        case none
    }

    /// The kinds of forge Kiln speaks to.
    public enum ForgeType: String, Sendable, Hashable, CaseIterable {
        /// GitHub and GitHub Enterprise Server.
        case github
    }

    /// One entry of `forges`.
    public struct Forge: Sendable, Hashable {
        /// The key under `forges`; the webhook URL is `/webhooks/<name>`.
        public var name: String
        /// Kind of forge.
        public var type: ForgeType
        /// API base URL.
        public var apiURL: String
        /// Webhook secrets (several during rotation).
        public var webhookSecrets: [Secret]
        /// API token (also used to fetch https clone URLs).
        public var token: Secret?
        /// Where statuses go.
        public var statusAPI: StatusAPI
    }

    /// What to do with pull requests from forks.
    public enum ForkPolicy: String, Sendable, Hashable, CaseIterable {
        /// Build them.
        case build
        /// Build after an administrator approves the exact head commit.
        case requireApproval = "require-approval"
        /// Never build them.
        case ignore
    }

    /// One entry of `repositories`.
    public struct Repository: Sendable, Hashable {
        /// Name of the forge it lives on.
        public var forge: String
        /// `owner/name`.
        public var name: String
        /// Where Kiln fetches from.
        public var cloneURL: String
        /// Fork pull request policy.
        public var forks: ForkPolicy
    }

    /// `server`.
    public var server: Server
    /// `storage`.
    public var storage: Storage
    /// `nix`.
    public var nix: Nix
    /// `forges`, in file order.
    public var forges: [Forge]
    /// `repositories`, in file order.
    public var repositories: [Repository]
}

/// Why the configuration cannot be used: every problem found, each naming its key.
public struct ConfigurationError: Error, Sendable, CustomStringConvertible {
    /// One line per problem: `FILE:LINE:COLUMN: key.path: message`.
    public var problems: [String]

    public var description: String { problems.joined(separator: "\n") }
}
