import KilnCore
import KilnForges
import KilnNix
import KilnPipeline
import KilnStore

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
        /// Pages, logs, the API, events and metrics need a `read` token (webhooks and `/health` do not).
        public var isPrivate = false
    }

    /// `storage`.
    public struct Storage: Sendable, Hashable {
        /// Database, logs, mirrors, work trees.
        public var dataDirectory: String
        /// Cap on each job's log.
        public var maxLogBytes: Int
        /// Builds (and their logs) older than this are removed by `kiln gc` and the daily collection.
        public var retention: Duration
        /// Successful builds of each branch whose outputs are kept as garbage-collector roots.
        public var keepOutputs: Int = 3
        /// The store is collected when its file system has less free space than this.
        public var minFree: Int64?
        /// A PostgreSQL database instead of `kiln.sqlite` in the data directory (`storage.database`).
        public var database: PostgresLocation?
        /// Where job logs go instead of `DATA/logs` (`storage.logs-dir`): a directory the
        /// instances on one database share, so that each shows every job's log.
        public var logsDirectory: String?
    }

    /// `nix`.
    public struct Nix: Sendable, Hashable {
        /// How nix is run.
        public var settings: NixSettings
        /// Jobs at once.
        public var maxParallelJobs: Int
        /// Timeouts.
        public var limits: JobLimits
        /// Installables realised at start and daily (`nix.warm`).
        public var warm: [String] = []
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

    }

    /// One entry of `forges`: its name, where its statuses go, and its adapter's own settings.
    public struct Forge: Sendable {
        /// The key under `forges`; the webhook URL is `/webhooks/<name>`.
        public var name: String
        /// Where statuses go.
        public var statusAPI: StatusAPI
        /// The adapter's settings, one case per kind of forge.
        public var settings: ForgeSettings

        /// Kind of forge.
        public var type: ForgeType { settings.type }

        /// How pull request heads are fetched from this forge.
        var pullRequestFetch: PullRequestFetch {
            switch settings {
            case .github, .gitea: return .ref("refs/pull/%d/head")
            case .gitlab: return .ref("refs/merge-requests/%d/head")
            case .bitbucketServer: return .ref("refs/pull-requests/%d/from")
            case .bitbucketCloud(_, let gitURL): return .forkBranch(base: gitURL)
            }
        }
    }

    /// Each kind of forge's settings, exactly as its adapter takes them: no union of every
    /// forge's keys.
    public enum ForgeSettings: Sendable {
        /// GitHub: a token or a GitHub App, and whether statuses are check runs.
        case github(GitHubForge.Settings)
        /// GitLab: secret tokens or signing tokens, and how the token is sent.
        case gitlab(GitLabForge.Settings)
        /// Bitbucket Cloud, and where forks are cloned from (`<git-url>/<owner>/<name>.git`).
        case bitbucketCloud(BitbucketCloudForge.Settings, gitURL: String)
        /// Bitbucket Data Center.
        case bitbucketServer(BitbucketServerForge.Settings)
        /// Gitea and Forgejo.
        case gitea(GiteaForge.Settings)

        /// Kind of forge.
        public var type: ForgeType {
            switch self {
            case .github: return .github
            case .gitlab: return .gitlab
            case .bitbucketCloud: return .bitbucketCloud
            case .bitbucketServer: return .bitbucketServer
            case .gitea: return .gitea
            }
        }

        /// The API URL (GitHub, Bitbucket Cloud) or the instance URL (the others).
        public var apiURL: String {
            switch self {
            case .github(let settings): return settings.apiURL
            case .gitlab(let settings): return settings.url
            case .bitbucketCloud(let settings, _): return settings.apiURL
            case .bitbucketServer(let settings): return settings.url
            case .gitea(let settings): return settings.url
            }
        }

        /// The webhook secrets (GitLab: its secret tokens).
        public var webhookSecrets: [Secret] {
            switch self {
            case .github(let settings): return settings.webhookSecrets
            case .gitlab(let settings): return settings.webhookSecrets
            case .bitbucketCloud(let settings, _): return settings.webhookSecrets
            case .bitbucketServer(let settings): return settings.webhookSecrets
            case .gitea(let settings): return settings.webhookSecrets
            }
        }

        /// The fixed API token, also git's password over https; nil for a GitHub App or none.
        public var token: Secret? {
            switch self {
            case .github(let settings):
                if case .token(let token) = settings.credentials { return token }
                return nil
            case .gitlab(let settings): return settings.token
            case .bitbucketCloud(let settings, _): return settings.token
            case .bitbucketServer(let settings): return settings.token
            case .gitea(let settings): return settings.token
            }
        }
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
    /// `registries`: where jobs' images are pushed.
    public var registries: [Registry] = []
    /// `build-service`: ad-hoc builds.
    public var buildService = BuildService()
    /// `reconcile.interval`: how often the forges are asked for heads whose webhook never
    /// arrived; nil (`off`) never.
    public var reconcileInterval: Duration? = .seconds(600)

    /// `build-service`.
    public struct BuildService: Sendable, Hashable {
        /// Where ad-hoc git builds may fetch from: `host` (https:// and ssh:// there) or `scheme://host[:port]`.
        public var gitHosts: [String] = []
        /// Templates, one `NAME.nix` each.
        public var templatesDirectory: String?
        /// Files that `git.token-file` names.
        public var secretsDirectory: String?
        /// The git repository the Iglu Builder socket's `noClone` jobs build from.
        public var igluWorkdir: String?
        /// Builds the Iglu Builder socket runs at once.
        public var igluSlots = 1
        /// Where ad-hoc builds may push as the cachix client does: origins such as `https://cachix.org`.
        public var cachixHosts: [String] = []
    }
}

/// Why the configuration cannot be used: every problem found, each naming its key.
public struct ConfigurationError: Error, Sendable, CustomStringConvertible {
    /// One line per problem: `FILE:LINE:COLUMN: key.path: message`.
    public var problems: [String]

    public var description: String { problems.joined(separator: "\n") }
}
