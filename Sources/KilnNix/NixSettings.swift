import Foundation

/// How Kiln runs nix.
public struct NixSettings: Sendable, Hashable {
    /// `nix` (looked up on PATH) or a path to it; `nix-store` and `nix-instantiate` are expected beside it.
    public var binary: String
    /// Extra `--option NAME VALUE` pairs (e.g. `substituters`, `builders`); never `sandbox` or `sandbox-fallback`.
    public var options: [String: String]
    /// Time between SIGINT and SIGKILL when stopping a job.
    public var killGrace: Duration
    /// Where trusted builds push their outputs; nil when there is no cache.
    public var cache: CacheSettings?
    /// Cap on each derivation's own log.
    public var derivationLogCap: Int
    /// Where each job's private nix home (`HOME`, `XDG_*`, `TMPDIR`) is made and removed again;
    /// nil for the system's temporary directory.
    public var scratchDirectory: String?
    /// Where the homes of the nix-daemons that jobs build with are made (their `TMPDIR` is where
    /// builds run); nil for `scratchDirectory`. Emptied when Kiln starts.
    public var daemonDirectory: String?
    /// How long a new nix-daemon may take to greet before it is ended (the job then builds with
    /// nix-store).
    public var daemonGreetingLimit: Duration = .seconds(30)
    /// Names the processes of this Kiln's jobs (their environment carries it), so that the next
    /// start ends what a killed Kiln left running; nil for none (`kiln run`, whose processes die with it).
    public var processMark: String?
    /// Longest time one build's evaluation (all its jobs for one system) may take.
    public var evalTimeout: Duration
    /// Largest resident memory of an evaluating nix process, in KiB; nil for no limit.
    public var evalMaxMemoryKilobytes: Int?
    /// Evaluations running at once, across builds.
    public var maxParallelEvaluations: Int
    /// Host paths a job may ask to see read-only in its sandbox (`read-only-paths`).
    public var allowedReadOnlyPaths: [String] = []
    /// The static shell a job with `provide-bin-sh` gets as `/bin/sh`.
    public var sandboxShell = "/bin/busybox"
    /// Arguments nix gives ssh when it reaches a remote builder (`NIX_SSHOPTS`): `-p 2222`,
    /// `-o ConnectTimeout=10`. Each is one word: nix splits them at white space.
    public var sshOptions: [String] = []

    /// Creates settings.
    public init(
        binary: String = "nix", options: [String: String] = [:], killGrace: Duration = .seconds(10),
        cache: CacheSettings? = nil, derivationLogCap: Int = 16 << 20, scratchDirectory: String? = nil,
        processMark: String? = nil, evalTimeout: Duration = .seconds(600), evalMaxMemoryKilobytes: Int? = nil,
        maxParallelEvaluations: Int = 1
    ) {
        self.evalTimeout = evalTimeout
        self.evalMaxMemoryKilobytes = evalMaxMemoryKilobytes
        self.maxParallelEvaluations = maxParallelEvaluations
        self.binary = binary
        self.options = options
        self.killGrace = killGrace
        self.cache = cache
        self.derivationLogCap = derivationLogCap
        self.scratchDirectory = scratchDirectory
        self.processMark = processMark
    }

    /// Options no configuration may override: builds in the sandbox with no fallback; a flake's
    /// `nixConfig` cannot change settings; classic evaluation reads only the work tree and the
    /// store (`restrict-eval`, with the work tree as the only search path); evaluation builds
    /// nothing (import-from-derivation would build inside the evaluation jail).
    public static let enforcedOptions = [
        "sandbox": "true", "sandbox-fallback": "false", "accept-flake-config": "false", "restrict-eval": "true",
        "allow-import-from-derivation": "false",
    ]

    /// Option names `nix.options` may not set: the enforced ones, their old aliases, and those
    /// that would widen what an evaluation may read.
    public static let refusedOptions: Set<String> = Set(enforcedOptions.keys).union([
        "build-use-sandbox", "pure-eval", "nix-path", "extra-nix-path",
    ])
}

/// A binary cache that trusted builds push to.
public struct CacheSettings: Sendable, Hashable {
    /// A nix store URL: `file:///var/cache/kiln`, `https://cache.example.org`, `s3://…`.
    public var pushTo: String
    /// The file holding the signing key (`nix key generate-secret`); its path, never its contents, reaches nix.
    public var secretKeyFile: String
    /// When true a failed push fails the job; otherwise it is only reported.
    public var required: Bool

    /// `pushTo` as logs, statuses and the API show it: without user information, and with the
    /// query's values (which may hold secrets) elided.
    public var displayURL: String { Self.display(pushTo) }

    /// A store URL without credentials: `https://user:pw@host/x?secret-key=k` → `https://host/x?secret-key=…`.
    public static func display(_ url: String) -> String {
        guard var components = URLComponents(string: url) else { return "<the binary cache>" }
        components.user = nil
        components.password = nil
        let names = components.queryItems?.map { $0.value == nil ? $0.name : $0.name + "=…" }
        components.query = nil
        guard let base = components.string else { return "<the binary cache>" }
        return names.map { base + "?" + $0.joined(separator: "&") } ?? base
    }

    /// `text` with every occurrence of `pushTo` shown as `displayURL` (nix's messages repeat it).
    public func redacting(_ text: String) -> String {
        text.replacingOccurrences(of: pushTo, with: displayURL)
    }

    /// Creates cache settings.
    public init(pushTo: String, secretKeyFile: String, required: Bool = false) {
        self.pushTo = pushTo
        self.secretKeyFile = secretKeyFile
        self.required = required
    }
}
