/// A git ref as pushed: a branch or a tag.
public enum GitRef: Sendable, Hashable, CustomStringConvertible {
    /// `refs/heads/<name>`.
    case branch(String)
    /// `refs/tags/<name>`.
    case tag(String)

    /// Parses a full ref name; nil for anything that is not a branch or tag.
    public init?(fullName: String) {
        if fullName.hasPrefix("refs/heads/"), fullName.count > 11 {
            self = .branch(String(fullName.dropFirst(11)))
        } else if fullName.hasPrefix("refs/tags/"), fullName.count > 10 {
            self = .tag(String(fullName.dropFirst(10)))
        } else {
            return nil
        }
    }

    /// The full ref name, `refs/heads/main`.
    public var fullName: String {
        switch self {
        case .branch(let name): return "refs/heads/\(name)"
        case .tag(let name): return "refs/tags/\(name)"
        }
    }

    /// The short name, `main`.
    public var shortName: String {
        switch self {
        case .branch(let name), .tag(let name): return name
        }
    }

    public var description: String {
        switch self {
        case .branch(let name): return "branch '\(name)'"
        case .tag(let name): return "tag '\(name)'"
        }
    }
}

/// What happened at the forge, as far as the pipeline's filters are concerned.
public enum PipelineEvent: Sendable, Hashable {
    /// A push of `ref`.
    case push(GitRef)
}

/// Server-side limits applied to every job.
public struct JobLimits: Sendable, Hashable {
    /// Wall-clock limit for jobs that set none.
    public var defaultTimeout: Duration
    /// Largest wall-clock limit a job may ask for.
    public var maxTimeout: Duration
    /// Silence limit for jobs that set none.
    public var defaultMaxSilent: Duration

    /// Creates limits.
    public init(defaultTimeout: Duration, maxTimeout: Duration, defaultMaxSilent: Duration) {
        self.defaultTimeout = defaultTimeout
        self.maxTimeout = maxTimeout
        self.defaultMaxSilent = defaultMaxSilent
    }

    /// The defaults of DESIGN.md §4: 30m, at most 1h, 10m of silence.
    public static let standard = JobLimits(
        defaultTimeout: .seconds(30 * 60), maxTimeout: .seconds(3600), defaultMaxSilent: .seconds(600))
}

/// A job ready to be queued: every limit resolved.
public struct PlannedJob: Sendable, Hashable {
    /// Job name; the status context is `kiln/<name>`.
    public var name: String
    /// Flake installables.
    public var installables: [String]
    /// Jobs that must succeed first.
    public var needs: [String]
    /// Wall-clock limit.
    public var timeout: Duration
    /// Silence limit.
    public var maxSilent: Duration

    /// Creates a planned job.
    public init(name: String, installables: [String], needs: [String], timeout: Duration, maxSilent: Duration) {
        self.name = name
        self.installables = installables
        self.needs = needs
        self.timeout = timeout
        self.maxSilent = maxSilent
    }
}

/// What a pipeline does for one event.
public enum BuildPlan: Sendable, Equatable {
    /// The `on` filters exclude the event; nothing is built and no status is posted.
    case skipped(reason: String)
    /// These jobs run.
    case jobs([PlannedJob])
    /// The file asks for something the server does not allow.
    case invalid([Diagnostic])

    /// Plans `spec` for `event` under the server's `limits`.
    public static func make(_ spec: PipelineSpec, for event: PipelineEvent, limits: JobLimits) -> BuildPlan {
        if let reason = skipReason(spec.triggers, event) { return .skipped(reason: reason) }
        var diagnostics: [Diagnostic] = []
        var jobs: [PlannedJob] = []
        for job in spec.jobs {
            if let timeout = job.timeout, timeout > limits.maxTimeout {
                diagnostics.append(
                    Diagnostic(
                        line: job.location.line, column: job.location.column,
                        message:
                            "job '\(job.name)' asks for a timeout of \(KilnDuration.format(timeout)); this server's max-timeout is \(KilnDuration.format(limits.maxTimeout))",
                        code: .exceedsLimit))
            }
            jobs.append(
                PlannedJob(
                    name: job.name, installables: job.installables, needs: job.needs,
                    timeout: job.timeout ?? limits.defaultTimeout, maxSilent: job.maxSilent ?? limits.defaultMaxSilent))
        }
        return diagnostics.isEmpty ? .jobs(jobs) : .invalid(diagnostics)
    }

    /// Why the `on` section excludes `event`, or nil when it builds.
    static func skipReason(_ triggers: Triggers?, _ event: PipelineEvent) -> String? {
        switch event {
        case .push(let ref):
            guard let triggers else {
                if case .tag = ref { return "\(ref) pushed; tags build only when on.push.tags lists them" }
                return nil
            }
            guard let filter = triggers.push else { return "pushes are not built: 'on' has no 'push'" }
            switch ref {
            case .branch(let name):
                guard let branches = filter.branches else {
                    return filter.tags == nil ? nil : "\(ref) pushed; on.push lists only tags"
                }
                return branches.contains { $0.matches(name) }
                    ? nil : "\(ref) does not match on.push.branches (\(branches.map(\.pattern).joined(separator: ", ")))"
            case .tag(let name):
                guard let tags = filter.tags else { return "\(ref) pushed; on.push.tags is not set" }
                return tags.contains { $0.matches(name) }
                    ? nil : "\(ref) does not match on.push.tags (\(tags.map(\.pattern).joined(separator: ", ")))"
            }
        }
    }
}
