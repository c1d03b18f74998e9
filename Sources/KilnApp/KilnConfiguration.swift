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
        /// Webhook bodies read at once; more deliveries at the same time get 503 and are redelivered.
        public var maxConcurrentWebhooks: Int
        /// The control API's bearer token (approvals, cancel, re-run); nil turns the API off.
        public var adminToken: Secret?
        /// A Unix socket serving post-build events as Determinate Nixd does; nil for none.
        public var eventsSocket: String? = nil
        /// Event streams open at once, at most; more get 503.
        public var maxEventStreams: Int = 1000
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
        /// The commit status (or build status) API.
        case statuses
        /// GitHub check runs (a GitHub App only).
        case checks
        /// Nowhere: statuses are recorded and shown on the build page only.
        case none
    }

    /// The kinds of forge Kiln speaks to.
    public enum ForgeType: String, Sendable, Hashable, CaseIterable {
        /// GitHub and GitHub Enterprise Server.
        case github
        /// GitLab.com and self-managed GitLab.
        case gitlab
        /// Bitbucket Cloud (bitbucket.org).
        case bitbucketCloud = "bitbucket-cloud"
        /// Bitbucket Data Center / Server.
        case bitbucketServer = "bitbucket-server"
        /// Gitea and Forgejo.
        case gitea

        /// The API (or instance) URL when none is configured; nil when one must be.
        var defaultURL: String? {
            switch self {
            case .github: return "https://api.github.com"
            case .gitlab: return "https://gitlab.com"
            case .bitbucketCloud: return "https://api.bitbucket.org"
            case .bitbucketServer, .gitea: return nil
            }
        }

        /// The user name sent with a token when git fetches over https.
        var cloneUser: String {
            switch self {
            case .github, .gitea: return "x-access-token"
            case .gitlab: return "oauth2"
            case .bitbucketCloud, .bitbucketServer: return "x-token-auth"
            }
        }

        /// How pull request heads are fetched from this kind of forge.
        func pullRequestFetch(gitURL: String) -> PullRequestFetch {
            switch self {
            case .github, .gitea: return .ref("refs/pull/%d/head")
            case .gitlab: return .ref("refs/merge-requests/%d/head")
            case .bitbucketServer: return .ref("refs/pull-requests/%d/from")
            case .bitbucketCloud: return .forkBranch(base: gitURL)
            }
        }
    }

    /// A GitHub App's credentials.
    public struct GitHubAppCredentials: Sendable, Hashable {
        /// The App's id (or client id), the JWT's issuer.
        public var appID: String
        /// The App's private key, PEM.
        public var privateKey: Secret
    }

    /// One entry of `forges`.
    public struct Forge: Sendable, Hashable {
        /// The key under `forges`; the webhook URL is `/webhooks/<name>`.
        public var name: String
        /// Kind of forge.
        public var type: ForgeType
        /// The API URL (GitHub, Bitbucket Cloud) or the instance URL (GitLab, Bitbucket Data Center, Gitea).
        public var apiURL: String
        /// Where forks are cloned from (Bitbucket Cloud): `<git-url>/<owner>/<name>.git`.
        public var gitURL: String
        /// Webhook secrets (several during rotation); GitLab's secret tokens.
        public var webhookSecrets: [Secret]
        /// GitLab signing tokens (`whsec_…`).
        public var signingTokens: [Secret]
        /// API token (also used to fetch https clone URLs).
        public var token: Secret?
        /// GitLab: send the token as `Authorization: Bearer` instead of `PRIVATE-TOKEN`.
        public var bearerToken: Bool
        /// A GitHub App, instead of a token.
        public var app: GitHubAppCredentials?
        /// Where statuses go.
        public var statusAPI: StatusAPI
    }

    /// One entry of `repositories`.
    public struct Repository: Sendable, Hashable {
        /// Name of the forge it lives on.
        public var forge: String
        /// `owner/name` (GitLab: `group/subgroup/name`; Bitbucket Data Center: `PROJECT/slug`).
        public var name: String
        /// Where Kiln fetches from.
        public var cloneURL: String
        /// Fork pull request policy.
        public var forks: ForkPolicy
        /// What pull request builds build.
        public var pullRequests: PullRequestMode
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
