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

/// The `on` section of a pipeline file.
public struct Triggers: Sendable, Equatable {
    /// `on.push`; nil when the file has an `on` section without `push` (pushes are not built).
    public var push: RefFilter?
    /// `on.pull_request`; nil when not listed (pull requests are not built).
    public var pullRequest: RefFilter?

    /// Creates triggers.
    public init(push: RefFilter?, pullRequest: RefFilter?) {
        self.push = push
        self.pullRequest = pullRequest
    }
}

/// Which branches and tags an event must touch to build.
///
/// For pushes: when neither list is given every branch (but no tag) builds;
/// when only one is given, only refs of that kind that match build.
/// For pull requests, `branches` filters the base branch and `tags` is unused.
public struct RefFilter: Sendable, Equatable {
    /// Branch patterns; nil when not given.
    public var branches: [Glob]?
    /// Tag patterns; nil when not given.
    public var tags: [Glob]?

    /// Creates a filter.
    public init(branches: [Glob]? = nil, tags: [Glob]? = nil) {
        self.branches = branches
        self.tags = tags
    }
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
    /// Flake installables to build, in order.
    public var installables: [String]
    /// Names of jobs that must succeed first.
    public var needs: [String]
    /// Wall-clock limit; nil means the server's default.
    public var timeout: Duration?
    /// Limit on time without output; nil means the server's default.
    public var maxSilent: Duration?
    /// Where the job's key is, for diagnostics raised after parsing (limits, cycles).
    public var location: SourceLocation
    /// Where each entry of `needs` is.
    public var needLocations: [SourceLocation]

    /// Creates a job spec.
    public init(
        name: String, installables: [String], needs: [String] = [], timeout: Duration? = nil,
        maxSilent: Duration? = nil, location: SourceLocation = .init(line: 1, column: 1),
        needLocations: [SourceLocation] = []
    ) {
        self.name = name
        self.installables = installables
        self.needs = needs
        self.timeout = timeout
        self.maxSilent = maxSilent
        self.location = location
        self.needLocations = needLocations
    }
}
