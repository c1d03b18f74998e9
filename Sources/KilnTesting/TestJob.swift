import KilnCore
import KilnPipeline

/// One job as a test names it: what it builds and where. `Executor.run(_:log:stop:)` takes it
/// through both of a job's steps, evaluation (a build of one job) and building, as the worker does.
public struct TestJob: Sendable, Hashable {
    public var name: String
    public var target: JobTarget
    public var system: String?
    public var workspace: String
    public var isPlainTree: Bool
    public var timeout: Duration
    public var maxSilent: Duration
    public var pushToCache: Bool
    public var derivationLogDirectory: String?
    public var image: ImagePush?
    public var constraints = BuildConstraints()

    public init(
        name: String, target: JobTarget, system: String? = nil, workspace: String, isPlainTree: Bool, timeout: Duration,
        maxSilent: Duration, pushToCache: Bool = false, derivationLogDirectory: String? = nil
    ) {
        self.name = name
        self.target = target
        self.system = system
        self.workspace = workspace
        self.isPlainTree = isPlainTree
        self.timeout = timeout
        self.maxSilent = maxSilent
        self.pushToCache = pushToCache
        self.derivationLogDirectory = derivationLogDirectory
    }
}

extension Executor {
    /// Evaluates `spec` as a build of one job, then builds what it found.
    public func run(_ spec: TestJob, log: any LogSink, stop: StopSignal) async -> JobReport {
        let request = EvaluationRequest(
            jobs: [EvaluationRequest.Job(name: spec.name, target: spec.target)], system: spec.system, workspace: spec.workspace,
            isPlainTree: spec.isPlainTree)
        let evaluation = await evaluate(request, log: log, stop: stop)
        switch evaluation.results[spec.name] {
        case .derivations(let derivations)?:
            var run = JobRun(
                name: spec.name, derivations: derivations, timeout: spec.timeout, maxSilent: spec.maxSilent,
                pushToCache: spec.pushToCache, derivationLogDirectory: spec.derivationLogDirectory,
                missing: evaluation.missing(of: spec.name), knownOutputs: evaluation.outputs)
            run.image = spec.image
            run.constraints = spec.constraints
            return await self.run(run, log: log, stop: stop)
        case .failed(let outcome, let messages)?:
            log.write(Array(messages.utf8))
            return JobReport(outcome: outcome, duration: evaluation.duration)
        case nil:
            return JobReport(outcome: .errored("the evaluation left the job out"), duration: evaluation.duration)
        }
    }
}
