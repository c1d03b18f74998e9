/// A validated `.kiln.yml`: what to build and when.
public struct PipelineSpec: Sendable, Equatable {
    /// The `on` section; `nil` when absent, which means every branch push and every pull request.
    public var triggers: Triggers?
    /// Jobs in file order.
    public var jobs: [JobSpec]

    /// Creates a spec.
    public init(triggers: Triggers?, jobs: [JobSpec]) {
        self.triggers = triggers
        self.jobs = jobs
    }
}

/// The `on` section of a pipeline file, or a job's `when`.
public struct Triggers: Sendable, Equatable {
    /// `push`; nil when the section does not list pushes (they do not build).
    public var push: EventFilter?
    /// `pull_request`; nil when not listed (pull requests do not build).
    public var pullRequest: EventFilter?

    /// Creates triggers.
    public init(push: EventFilter?, pullRequest: EventFilter?) {
        self.push = push
        self.pullRequest = pullRequest
    }
}

/// Which events build: refs and changed paths.
///
/// For pushes, when neither `branches` nor `tags` is given every branch (but no tag) builds;
/// when only one is given, only refs of that kind that match build. For pull requests,
/// `branches` filters the base branch. `paths` builds when a changed file matches;
/// `paths-ignore` skips when every changed file matches.
public struct EventFilter: Sendable, Equatable {
    /// Branch patterns; nil when not given.
    public var branches: [Glob]?
    /// Tag patterns; nil when not given.
    public var tags: [Glob]?
    /// Changed-file patterns that must match at least one file; nil when not given.
    public var paths: [Glob]?
    /// Changed-file patterns that, when they match every changed file, skip; nil when not given.
    public var pathsIgnore: [Glob]?

    /// Creates a filter.
    public init(branches: [Glob]? = nil, tags: [Glob]? = nil, paths: [Glob]? = nil, pathsIgnore: [Glob]? = nil) {
        self.branches = branches
        self.tags = tags
        self.paths = paths
        self.pathsIgnore = pathsIgnore
    }
}

/// What a job builds.
public enum JobTarget: Sendable, Hashable, Codable {
    /// Flake installables (`build:`).
    case installables([String])
    /// A classic nix file, optionally one attribute of it (`file:` and `attr:`), as `nix-build FILE -A ATTR`.
    case classic(file: String, attribute: String?)
    /// The flake's checks (`check: true`), as `nix flake check`.
    case flakeCheck
}

/// A 1-based position in a file.
public struct SourceLocation: Sendable, Hashable {
    /// 1-based line.
    public var line: Int
    /// 1-based column.
    public var column: Int

    /// Creates a location.
    public init(line: Int, column: Int) {
        self.line = line
        self.column = column
    }
}

/// One job as written in the pipeline file.
public struct JobSpec: Sendable, Equatable {
    /// The job's key under `jobs`; also its status context `kiln/<name>`.
    public var name: String
    /// What it builds.
    public var target: JobTarget
    /// Names of jobs that must succeed first.
    public var needs: [String]
    /// Wall-clock limit; nil means the server's default.
    public var timeout: Duration?
    /// Limit on time without output; nil means the server's default.
    public var maxSilent: Duration?
    /// `systems`: one job per system; nil means the server's own system.
    public var systems: [String]?
    /// `when`: a job-level filter, same shape as `on`; nil means always.
    public var when: JobFilter?
    /// `allow-failure`: a failure does not fail the build, and jobs that need it still run.
    public var allowFailure: Bool
    /// `cache: push`: push outputs to the server's binary cache (trusted builds only).
    public var cachePush: Bool
    /// `min-memory` in bytes: the job waits until this much memory is free.
    public var minMemory: Int?
    /// `image`: push the output, an image, to a registry (trusted builds only).
    public var image: ImageSpec?
    /// `network`, `read-only-paths`, `provide-bin-sh`.
    public var constraints = BuildConstraints()
    /// `tags`: names and values on the job's build records (`/api/v1/nixbuild/builds`).
    public var tags: [String: String] = [:]
    /// Where the job's key is, for diagnostics raised after parsing (limits, cycles).
    public var location: SourceLocation
    /// Where each entry of `needs` is.
    public var needLocations: [SourceLocation]

    /// Creates a job spec.
    public init(
        name: String, target: JobTarget, needs: [String] = [], timeout: Duration? = nil, maxSilent: Duration? = nil,
        systems: [String]? = nil, when: JobFilter? = nil, allowFailure: Bool = false, cachePush: Bool = false,
        minMemory: Int? = nil, location: SourceLocation = .init(line: 1, column: 1), needLocations: [SourceLocation] = []
    ) {
        self.name = name
        self.target = target
        self.needs = needs
        self.timeout = timeout
        self.maxSilent = maxSilent
        self.systems = systems
        self.when = when
        self.allowFailure = allowFailure
        self.cachePush = cachePush
        self.minMemory = minMemory
        self.location = location
        self.needLocations = needLocations
    }
}

/// A job's `when`: either per event, like `on`, or one filter for every event.
public enum JobFilter: Sendable, Equatable {
    /// `when: {push: …, pull_request: …}`.
    case perEvent(Triggers)
    /// `when: {branches: …, paths: …}`: applies to pushes and to pull requests (base branch).
    case anyEvent(EventFilter)
}
