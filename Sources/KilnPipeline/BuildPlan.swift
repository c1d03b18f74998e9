import Foundation

/// What happened at the forge, as far as the pipeline's filters are concerned.
public struct PipelineEvent: Sendable, Hashable {
    /// The kind of event.
    public enum Kind: Sendable, Hashable {
        /// A push of a ref.
        case push(GitRef)
        /// A pull request into `base` (a branch name).
        case pullRequest(base: String)
    }

    /// The kind of event.
    public var kind: Kind
    /// Files changed by the push or pull request; nil when unknown (every `paths` filter passes).
    public var changedFiles: [String]?
    /// The head commit's message; nil when unknown.
    public var commitMessage: String?

    /// Creates an event.
    public init(_ kind: Kind, changedFiles: [String]? = nil, commitMessage: String? = nil) {
        self.kind = kind
        self.changedFiles = changedFiles
        self.commitMessage = commitMessage
    }

    /// A push of `ref` with nothing else known.
    public static func push(_ ref: GitRef) -> PipelineEvent { PipelineEvent(.push(ref)) }
}

/// Server-side limits applied to every job.
public struct JobLimits: Sendable, Hashable {
    /// Wall-clock limit for jobs that set none.
    public var defaultTimeout: Duration
    /// Largest wall-clock (and silence) limit a job may ask for.
    public var maxTimeout: Duration
    /// Silence limit for jobs that set none.
    public var defaultMaxSilent: Duration
    /// The hosts of the registries images may be pushed to; nil when not known (`kiln check`
    /// without a server configuration), so not checked.
    public var registryHosts: Set<String>?
    /// The host paths jobs may see read-only (`nix.allowed-read-only-paths`); nil when not
    /// known, so not checked.
    public var allowedReadOnlyPaths: Set<String>?

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

/// A job ready to be queued: systems expanded, `needs` resolved, every limit set.
public struct PlannedJob: Sendable, Hashable {
    /// Job name; `job (system)` for a job with `systems`. The status context is `kiln/<name>`.
    public var name: String
    /// What it builds.
    public var target: JobTarget
    /// The system it builds for; nil for the server's own.
    public var system: String?
    /// Planned jobs (by name) that must succeed first.
    public var needs: [String]
    /// Wall-clock limit.
    public var timeout: Duration
    /// Silence limit.
    public var maxSilent: Duration
    /// A failure does not fail the build.
    public var allowFailure: Bool
    /// Push outputs to the binary cache when the build is trusted.
    public var cachePush: Bool
    /// Bytes of free memory the job waits for.
    public var minMemory: Int?
    /// The image its output is pushed as, when the build is trusted.
    public var image: ImageSpec?
    /// What its build needs of the sandbox.
    public var constraints = BuildConstraints()
    /// Its build records' tags (`tags` in the pipeline).
    public var tags: [String: String] = [:]

    /// Creates a planned job.
    public init(
        name: String, target: JobTarget, system: String? = nil, needs: [String], timeout: Duration, maxSilent: Duration,
        allowFailure: Bool = false, cachePush: Bool = false, minMemory: Int? = nil, image: ImageSpec? = nil
    ) {
        self.image = image
        self.name = name
        self.target = target
        self.system = system
        self.needs = needs
        self.timeout = timeout
        self.maxSilent = maxSilent
        self.allowFailure = allowFailure
        self.cachePush = cachePush
        self.minMemory = minMemory
    }

    /// Flake installables, for jobs that build them; empty otherwise.
    public var installables: [String] {
        if case .installables(let installables) = target { return installables }
        return []
    }
}

/// What a pipeline does for one event.
public enum BuildPlan: Sendable, Equatable {
    /// Nothing is built. When `announce` is false (the `on` filters exclude the event) no status
    /// is posted; when true (`[skip ci]`) one final status says so.
    case skipped(reason: String, announce: Bool)
    /// These jobs run.
    case jobs([PlannedJob])
    /// The file asks for something the server does not allow.
    case invalid([Diagnostic])

    /// Commit message markers that skip a build.
    public static let skipMarkers = ["[skip ci]", "[ci skip]"]

    /// Plans `spec` for `event` under the server's `limits`.
    public static func make(_ spec: PipelineSpec, for event: PipelineEvent, limits: JobLimits) -> BuildPlan {
        if let reason = EventMatch.reason(spec.triggers, event) { return .skipped(reason: reason, announce: false) }
        if let message = event.commitMessage?.lowercased(), let marker = skipMarkers.first(where: message.contains) {
            return .skipped(reason: "skipped: the commit message says \(marker)", announce: true)
        }
        let diagnostics = limitProblems(spec.jobs, limits)
        guard diagnostics.isEmpty else { return .invalid(diagnostics) }

        var excluded: [String: String] = [:]
        for job in spec.jobs {
            if let when = job.when, let reason = EventMatch.reason(when, event) { excluded[job.name] = reason }
        }
        // A job whose need does not run does not run either.
        var changed = true
        while changed {
            changed = false
            for job in spec.jobs where excluded[job.name] == nil {
                if let need = job.needs.first(where: { excluded[$0] != nil }) {
                    excluded[job.name] = "needs '\(need)', which does not run for this event"
                    changed = true
                }
            }
        }
        let running = spec.jobs.filter { excluded[$0.name] == nil }
        guard !running.isEmpty else {
            let reasons = spec.jobs.map { "\($0.name): \(excluded[$0.name] ?? "")" }.joined(separator: "; ")
            return .skipped(reason: "no job applies to this event (\(reasons))", announce: false)
        }
        let byName = Dictionary(running.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
        var planned: [PlannedJob] = []
        for job in running {
            for system in job.systems.map({ $0.map(Optional.some) }) ?? [nil] {
                let needs = job.needs.flatMap { need -> [String] in
                    guard let needed = byName[need] else { return [] }
                    guard let systems = needed.systems else { return [need] }
                    if let system, systems.contains(system) { return [variantName(need, system)] }
                    return systems.map { variantName(need, $0) }
                }
                planned.append(
                    PlannedJob(
                        name: system.map { variantName(job.name, $0) } ?? job.name, target: job.target, system: system,
                        needs: needs, timeout: job.timeout ?? limits.defaultTimeout,
                        maxSilent: job.maxSilent ?? limits.defaultMaxSilent, allowFailure: job.allowFailure,
                        cachePush: job.cachePush, minMemory: job.minMemory, image: job.image))
                planned[planned.count - 1].constraints = job.constraints
                planned[planned.count - 1].tags = job.tags
            }
        }
        return .jobs(planned)
    }

    /// The name of a job's variant for one system: `tests (x86_64-linux)`.
    public static func variantName(_ job: String, _ system: String) -> String { "\(job) (\(system))" }

    private static func limitProblems(_ jobs: [JobSpec], _ limits: JobLimits) -> [Diagnostic] {
        var diagnostics: [Diagnostic] = []
        for job in jobs {
            for (key, value) in [("timeout", job.timeout), ("max-silent", job.maxSilent)] {
                guard let value, value > limits.maxTimeout else { continue }
                diagnostics.append(
                    Diagnostic(
                        line: job.location.line, column: job.location.column,
                        message:
                            "job '\(job.name)' asks for a \(key) of \(KilnDuration.format(value)); this server's max-timeout is \(KilnDuration.format(limits.maxTimeout))",
                        code: .exceedsLimit))
            }
            if let allowed = limits.allowedReadOnlyPaths {
                for path in job.constraints.readOnlyPaths where !allowed.contains(path) {
                    let known = allowed.isEmpty ? "it allows none" : "it allows " + allowed.sorted().joined(separator: ", ")
                    diagnostics.append(
                        Diagnostic(
                            line: job.location.line, column: job.location.column,
                            message: "job '\(job.name)' asks to see \(path), which this server does not allow (\(known)); add it to nix.allowed-read-only-paths",
                            code: .exceedsLimit))
                }
            }
            if let image = job.image, let hosts = limits.registryHosts, !hosts.contains(image.host) {
                let known = hosts.isEmpty ? "it has none" : "its registries are " + hosts.sorted().joined(separator: ", ")
                diagnostics.append(
                    Diagnostic(
                        line: job.location.line, column: job.location.column,
                        message: "job '\(job.name)' pushes to \(image.host), which is not a registry of this server (\(known)); configure registries.NAME.host",
                        code: .exceedsLimit))
            }
        }
        return diagnostics
    }
}

/// Whether an event passes `on` or `when`.
enum EventMatch {
    /// Why `triggers` (`on`) excludes `event`, or nil when it builds. No `on` section builds
    /// every branch push and every pull request.
    static func reason(_ triggers: Triggers?, _ event: PipelineEvent) -> String? {
        switch event.kind {
        case .push(let ref):
            guard let triggers else {
                if case .tag = ref { return "\(ref) pushed; tags build only when on.push.tags lists them" }
                return nil
            }
            guard let filter = triggers.push else { return "pushes are not built: 'on' has no 'push'" }
            return reason(filter, event, section: "on.push")
        case .pullRequest:
            guard let triggers else { return nil }
            guard let filter = triggers.pullRequest else { return "pull requests are not built: 'on' has no 'pull_request'" }
            return reason(filter, event, section: "on.pull_request")
        }
    }

    /// Why a job's `when` excludes `event`, or nil when the job runs.
    static func reason(_ when: JobFilter, _ event: PipelineEvent) -> String? {
        switch when {
        case .perEvent(let triggers):
            switch event.kind {
            case .push:
                guard let filter = triggers.push else { return "its 'when' has no 'push'" }
                return reason(filter, event, section: "when.push")
            case .pullRequest:
                guard let filter = triggers.pullRequest else { return "its 'when' has no 'pull_request'" }
                return reason(filter, event, section: "when.pull_request")
            }
        case .anyEvent(let filter):
            return reason(filter, event, section: "when")
        }
    }

    /// Why `filter` excludes `event`, or nil when it passes.
    static func reason(_ filter: EventFilter, _ event: PipelineEvent, section: String) -> String? {
        switch event.kind {
        case .push(let ref):
            switch ref {
            case .branch(let name):
                if let branches = filter.branches {
                    if !branches.contains(where: { $0.matches(name) }) {
                        return "\(ref) does not match \(section).branches (\(list(branches)))"
                    }
                } else if filter.tags != nil {
                    return "\(ref) pushed; \(section) lists only tags"
                }
            case .tag(let name):
                guard let tags = filter.tags else { return "\(ref) pushed; \(section).tags is not set" }
                if !tags.contains(where: { $0.matches(name) }) {
                    return "\(ref) does not match \(section).tags (\(list(tags)))"
                }
            }
        case .pullRequest(let base):
            if let branches = filter.branches, !branches.contains(where: { $0.matches(base) }) {
                return "base branch '\(base)' does not match \(section).branches (\(list(branches)))"
            }
            if filter.branches == nil, filter.tags != nil {
                return "pull request; \(section) lists only tags"
            }
        }
        guard let changed = event.changedFiles else { return nil }
        if let paths = filter.paths, !changed.contains(where: { file in paths.contains { $0.matches(file) } }) {
            return "no changed file matches \(section).paths (\(list(paths)))"
        }
        if let ignored = filter.pathsIgnore, !changed.isEmpty,
            changed.allSatisfy({ file in ignored.contains { $0.matches(file) } })
        {
            return "every changed file matches \(section).paths-ignore (\(list(ignored)))"
        }
        return nil
    }

    private static func list(_ globs: [Glob]) -> String { globs.map(\.pattern).joined(separator: ", ") }
}

extension PipelineSpec {
    /// Why the pipeline's `on` section does not build `event`, or nil when it does (changed
    /// files unknown: every `paths` filter passes). The reconciler asks this of each branch.
    public func reasonNotBuilt(_ event: PipelineEvent) -> String? { EventMatch.reason(triggers, event) }
}
