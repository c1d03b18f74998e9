import Foundation
import KilnPipeline

/// What an ad-hoc build (`POST /api/v1/builds`) builds: one job, planned from the request rather
/// than from a `.kiln.yml`. Its source (an expression, a template or a git repository) is a
/// commit of the build service's own repository, so planning, checkout, evaluation, the
/// sandbox, timeouts, logs and events are those of every build.
public struct AdHocPlan: Sendable, Hashable, Codable {
    /// What the job builds.
    public var target: JobTarget
    /// Its wall-clock limit; nil for the server's default.
    public var timeoutSeconds: Int64?
    /// Where the source came from, for pages: `expression`, `template node-app`, `git https://…#main`.
    public var origin: String
    /// The image its output is pushed as.
    public var image: ImageSpec?
    /// Where the outputs' closure is pushed as the `cachix` client does (its secrets are kept
    /// in memory, not here): `cachix cache NAME at HOST`.
    public var cachix: String?
    /// How nix builds it: `cores`, `max-jobs` (numbers) and `keep-going`, as the request asked.
    public var buildOptions = AdHocBuildOptions()

    /// Creates a plan.
    public init(target: JobTarget, timeoutSeconds: Int64? = nil, origin: String, image: ImageSpec? = nil, cachix: String? = nil) {
        self.cachix = cachix
        self.target = target
        self.timeoutSeconds = timeoutSeconds
        self.origin = origin
        self.image = image
    }

    /// The plan as JSON with sorted keys: the same plan, the same bytes.
    public var canonicalBytes: [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return Array((try? encoder.encode(self)) ?? Data())
    }

    /// The job's name, and its status context `kiln/build`.
    public static let jobName = "build"

    /// The plan as a pipeline of one job.
    public var spec: PipelineSpec {
        var job = JobSpec(name: Self.jobName, target: target, timeout: timeoutSeconds.map { .seconds($0) })
        job.image = image
        return PipelineSpec(triggers: nil, jobs: [job])
    }
}

/// What an ad-hoc request may say of how nix builds: nothing that changes what is built or where.
public struct AdHocBuildOptions: Sendable, Hashable, Codable {
    /// `--option cores N` (0: all the machine's).
    public var cores: Int?
    /// `--option max-jobs N`.
    public var maxJobs: Int?
    /// `--keep-going`.
    public var keepGoing = false

    /// Creates options.
    public init(cores: Int? = nil, maxJobs: Int? = nil, keepGoing: Bool = false) {
        self.cores = cores
        self.maxJobs = maxJobs
        self.keepGoing = keepGoing
    }

    /// nix's arguments for them.
    public var arguments: [String] {
        (cores.map { ["--option", "cores", String($0)] } ?? []) + (maxJobs.map { ["--option", "max-jobs", String($0)] } ?? [])
            + (keepGoing ? ["--keep-going"] : [])
    }
}
