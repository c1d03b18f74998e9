import Foundation
import KilnPipeline
import Logging
import ServiceLifecycle
import Synchronization

/// Where the worker keeps work trees and logs. Names are database ids, never payload text.
public struct WorkerPaths: Sendable, Hashable {
    /// Directory of per-job work trees.
    public var workspaces: String
    /// Directory of per-job logs.
    public var logs: String

    /// Creates paths under a data directory; logs in `logs` when given (a directory instances share).
    public init(dataDirectory: String, logs: String? = nil) {
        self.workspaces = dataDirectory + "/workspaces"
        self.logs = logs ?? dataDirectory + "/logs"
    }

    /// The work tree a build's jobs are evaluated in; it exists only while they are.
    public func evaluationWorkspace(_ build: BuildID, job: JobID) -> String { "\(workspaces)/\(build)-\(job)" }
    /// The log of a job.
    public func log(_ job: JobID) -> String { "\(logs)/\(job).log" }
    /// The directory of a job's per-derivation logs.
    public func derivationLogs(_ job: JobID) -> String { "\(logs)/\(job).d" }
}

/// Settings the worker needs from the configuration.
public struct WorkerSettings: Sendable {
    /// Limits applied when planning.
    public var limits: JobLimits
    /// Jobs running at once.
    public var maxParallelJobs: Int
    /// Cap on each job's log.
    public var logCapBytes: Int
    /// Where files go.
    public var paths: WorkerPaths
    /// How long to wait before checking an executor that was not ready again.
    public var readinessRetry: Duration
    /// Builds planned at once (each of a different repository).
    public var maxConcurrentPlanning: Int = 4
    /// The longest a build's evaluation may take (`nix.eval-timeout`): a job waits for it before
    /// its own timeout starts, so the watchdog gives it this much longer.
    public var evaluationTimeout: Duration = .seconds(600)
    /// The registries images may be pushed to (`registries`).
    public var registries: [Registry] = []
    /// Ad-hoc builds' secrets (their Cachix tokens and keys), in memory only.
    public var adHocSecrets = AdHocSecrets()
    /// Other Kiln instances may use the database (PostgreSQL): at start and every third of a
    /// lease, only work whose lease lapsed (a dead instance's) is taken over, not all that is under way.
    public var sharedDatabase = false

    /// Creates settings.
    public init(
        limits: JobLimits, maxParallelJobs: Int, logCapBytes: Int, paths: WorkerPaths, readinessRetry: Duration = .seconds(30)
    ) {
        self.limits = limits
        self.maxParallelJobs = maxParallelJobs
        self.logCapBytes = logCapBytes
        self.paths = paths
        self.readinessRetry = readinessRetry
    }
}

/// Doorbells that connect intake, the worker and the status reporter.
public struct Doorbells: Sendable {
    /// A build was accepted.
    public let planning = Doorbell()
    /// Jobs were queued or a job ended.
    public let jobs = Doorbell()
    /// Statuses were enqueued.
    public let statuses = Doorbell()
    /// Events were appended to the event log.
    public let events = Doorbell()

    /// Creates a set of quiet doorbells.
    public init() {}
}

/// Plans accepted builds (fetch, read `.kiln.yml`, filter, queue jobs) and runs their jobs,
/// at most `maxParallelJobs` at once.
public struct BuildWorker: Service {
    private let coordinator: BuildCoordinator
    private let source: any SourceProvider
    private let executor: any Executor
    private let repositories: [RepositoryID: Repository]
    private let settings: WorkerSettings
    private let health: HealthState
    private let progress: ProgressBoard
    private let evaluations = BuildEvaluations()
    private let logger: Logger

    /// Creates the worker; every change it makes goes through `coordinator`. Running jobs'
    /// progress is posted on `progress`.
    public init(
        coordinator: BuildCoordinator, source: any SourceProvider, executor: any Executor,
        repositories: [RepositoryID: Repository], settings: WorkerSettings, health: HealthState,
        progress: ProgressBoard, logger: Logger
    ) {
        self.coordinator = coordinator
        self.source = source
        self.executor = executor
        self.repositories = repositories
        self.settings = settings
        self.health = health
        self.progress = progress
        self.logger = logger
    }

    private var store: any KilnStore { coordinator.store }
    private var bells: Doorbells { coordinator.bells }

    private var planner: BuildPlanner {
        BuildPlanner(coordinator: coordinator, source: source, repositories: repositories, limits: settings.limits, logger: logger)
    }

    public func run() async throws {
        // Whatever a killed Kiln left running ends before its jobs are queued again.
        let leftovers = await executor.endLeftoverProcesses()
        if leftovers > 0 {
            logger.warning("ended processes that a previous run of Kiln left running", metadata: ["processes": "\(leftovers)"])
        }
        // No job runs yet: any work tree here was left by a crash.
        try? FileManager.default.removeItem(atPath: settings.paths.workspaces)
        try FileManager.default.createDirectory(atPath: settings.paths.workspaces, withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: settings.paths.logs, withIntermediateDirectories: true)
        let recovered = try await coordinator.recoverInterrupted(leasesEndedBy: settings.sharedDatabase ? Date() : .distantFuture)
        if recovered.builds + recovered.jobs > 0 {
            logger.notice("resuming work interrupted by a restart", metadata: [
                "builds": "\(recovered.builds)", "jobs": "\(recovered.jobs)",
            ])
        }
        await cancelWhenGracefulShutdown {
            // Until nix is usable Kiln keeps serving: /health says why, intake still records
            // deliveries, and accepted builds wait in the queue.
            while !Task.isCancelled {
                let readiness = await self.executor.readiness()
                self.health.update(readiness)
                switch readiness {
                case .ready(let detail):
                    self.logger.info("executor ready", metadata: ["detail": "\(detail)"])
                case .notReady(let reason):
                    self.logger.critical("not building anything; checking again in \(self.settings.readinessRetry)", metadata: ["reason": "\(reason)"])
                    try? await Task.sleep(for: self.settings.readinessRetry)
                    continue
                }
                break
            }
            guard !Task.isCancelled else { return }
            await withDiscardingTaskGroup { group in
                group.addTask { await self.planLoop() }
                group.addTask { await self.watchLoop() }
                group.addTask { await self.leaseLoop() }
                for _ in 0..<max(1, self.settings.maxParallelJobs) {
                    group.addTask { await self.jobLoop() }
                }
            }
        }
    }

    /// Every minute, ends what is overdue (and rings for the statuses it enqueued).
    private func watchLoop() async {
        var watchdog = Watchdog(coordinator: coordinator, logger: logger)
        // A job's clock restarts when its build's evaluation ends; before that it may wait for
        // the evaluations of as many builds as jobs run at once.
        watchdog.jobGrace += Double(settings.evaluationTimeout.components.seconds * Int64(max(1, settings.maxParallelJobs)))
        while !Task.isCancelled {
            await watchdog.sweep(now: Date())
            try? await Task.sleep(for: .seconds(60))
        }
    }

    /// Every third of a lease: renews this instance's leases, stops the jobs it lost (another
    /// instance took them over) or whose build another instance cancelled, and, on a shared
    /// database, takes over what a dead instance held.
    private func leaseLoop() async {
        let every = max(1, store.lease.duration / 3)
        while !Task.isCancelled {
            try? await Task.sleep(for: .seconds(every))
            await keepLeases(now: Date())
        }
    }

    func keepLeases(now: Date) async {
        do {
            let held = try await store.renewLeases(at: now)
            let local = coordinator.running.registered()
            let lost = local.filter { held[$0] == nil }
            if !lost.isEmpty {
                logger.warning("stopping jobs whose lease lapsed; another instance runs them", metadata: ["jobs": "\(lost.sorted())"])
                coordinator.running.stop(lost.sorted(), .shutdown)
            }
            for (job, summary) in held.sorted(by: { $0.key < $1.key }) where local.contains(job) {
                guard let summary = summary ?? nil else { continue }
                coordinator.running.stop([job], JobStateMachine.reason(described: summary))
            }
            guard settings.sharedDatabase else { return }
            let recovered = try await coordinator.recoverInterrupted(leasesEndedBy: now)
            if recovered.builds + recovered.jobs > 0 {
                logger.notice("took over work whose instance stopped renewing its lease", metadata: [
                    "builds": "\(recovered.builds)", "jobs": "\(recovered.jobs)",
                ])
            }
        } catch {
            logger.error("could not renew leases: \(error)")
        }
    }

    // MARK: Planning

    /// Plans builds, several at once but one per repository at a time (they share its mirror),
    /// so that a slow fetch of one repository never holds up another's.
    private func planLoop() async {
        let busy = BusyRepositories()
        await withDiscardingTaskGroup { group in
            while !Task.isCancelled {
                let seen = bells.planning.generation
                let planning = busy.set.withLock { $0 }
                if planning.count < settings.maxConcurrentPlanning {
                    do {
                        if let build = try await coordinator.claimBuildToPlan(excluding: planning) {
                            busy.set.withLock { _ = $0.insert(build.repositoryID) }
                            group.addTask {
                                await self.plan(build)
                                busy.set.withLock { _ = $0.remove(build.repositoryID) }
                                // Its repository is free again: another of its builds may wait.
                                self.bells.planning.ring()
                            }
                            continue
                        }
                    } catch {
                        logger.error("could not read queued builds: \(error)")
                    }
                }
                await bells.planning.wait(after: seen, upTo: .seconds(10))
            }
        }
    }

    private func plan(_ build: BuildRecord) async {
        let (result, resolution) = await planner.plan(build)
        do {
            try await coordinator.finishPlanning(build.id, result, resolution: resolution)
        } catch {
            logger.error("could not record the plan", metadata: ["build.id": "\(build.id)", "error": "\(error)"])
            return
        }
        logger.info("build planned", metadata: ["build.id": "\(build.id)", "result": "\(Self.describe(result))"])
    }

    private static func describe(_ result: PlanningResult) -> String {
        switch result {
        case .planned(let jobs), .rerunFailed(let jobs, _): return "\(jobs.count) jobs queued"
        case .reused(let earlier): return "same tree and pipeline as build #\(earlier); its results reused"
        case .skipped(let reason, _): return "skipped: \(reason)"
        case .awaitingApproval(let reason): return reason
        case .invalid(let summary, _): return "invalid: \(summary)"
        case .errored(let message): return "error: \(message)"
        }
    }

    /// The commit a build's jobs check out, in this instance's mirror. Another instance (on the
    /// same database) may have planned the build: then this mirror fetches its commits first,
    /// and a pull request's merge is made again here. The merge is the same commit (its
    /// signature and time are fixed) unless the base branch moved since, when it is the merge
    /// with the base's tip now.
    private func localCommit(_ build: BuildRecord, _ repository: Repository) async throws(SourceError) -> String {
        let built = build.builtSHA ?? build.sha
        if try await source.resolve(repository, commit: built) != nil { return built }
        guard let pullRequest = build.pullRequest else {
            _ = try await source.fetch(repository, ref: build.ref)
            return built
        }
        let baseTip = try await source.fetch(repository, ref: "refs/heads/\(pullRequest.baseBranch)")
        _ = try await source.fetchPullRequest(repository, pullRequest)
        guard built != build.sha else { return built }
        switch try await source.merge(repository, base: baseTip, head: build.sha) {
        case .merged(let merge): return merge
        case .conflict(let paths):
            throw SourceError("cannot merge into \(pullRequest.baseBranch) at \(CommitID.short(baseTip)) again: conflicts in \(paths.prefix(5).joined(separator: ", "))")
        }
    }

    /// Checks the build's commit out into a fresh work tree at `target`. The tree is written to
    /// a temporary directory and renamed, so a tree at `target` is always complete.
    private func prepareWorkspace(_ target: String, _ build: BuildRecord, _ repository: Repository)
        async throws(SourceError)
    {
        try? FileManager.default.removeItem(atPath: target)
        let temporary = "\(settings.paths.workspaces)/.checkout-\(UUID().uuidString)"
        try await source.checkout(repository, sha: try await localCommit(build, repository), into: temporary)
        guard rename(temporary, target) == 0 else {
            try? FileManager.default.removeItem(atPath: temporary)
            throw SourceError("could not move the work tree into place at \(target): errno \(errno)")
        }
    }

    /// Evaluates every unfinished job of the build that builds for `claimed`'s system, in one
    /// work tree, and records what it found. Its messages go to the log of the job that asked.
    private func evaluate(_ claimed: ClaimedJob, _ repository: Repository, log: JobLogFile, stop: StopSignal) async
        -> EvaluationReport
    {
        let build = claimed.build
        let jobs: [JobRecord]
        do {
            jobs = (try await store.buildDetails(build.id)?.jobs ?? [claimed.job])
                .filter { $0.system == claimed.job.system && !$0.state.isFinal }
        } catch {
            log.note("could not read the build's jobs; evaluating this job alone: \(error)")
            jobs = [claimed.job]
        }
        var request = EvaluationRequest(
            jobs: jobs.map { EvaluationRequest.Job(name: $0.name, target: $0.target) }, system: claimed.job.system,
            workspace: settings.paths.evaluationWorkspace(build.id, job: claimed.job.id), isPlainTree: true)
        if let recorded = try? await store.recordedDerivations(sameTreeAs: build.id) {
            request.recorded = RecordedEvaluation(source: "build #\(recorded.build)", derivations: recorded.derivations)
        }
        let count = jobs.count == 1 ? "1 job" : "\(jobs.count) jobs"
        await coordinator.notePhase(build.id, "evaluating \(count)", derivations: [:])
        do {
            try await prepareWorkspace(request.workspace, build, repository)
        } catch {
            log.note("checkout failed: \(error.message)")
            return .all(request, stop.reason.map(JobOutcome.cancelled) ?? .errored("checkout failed: \(error.message)"), log: "checkout failed: \(error.message)")
        }
        defer { try? FileManager.default.removeItem(atPath: request.workspace) }
        let report = await executor.evaluate(request, log: log, stop: stop)
        let found = report.results.compactMapValues { result -> [String]? in
            if case .derivations(let derivations) = result { return derivations }
            return nil
        }
        await coordinator.notePhase(build.id, "building \(count)", derivations: found)
        return report
    }

    // MARK: Jobs

    private func jobLoop() async {
        while !Task.isCancelled {
            let seen = bells.jobs.generation
            do {
                if let (claimed, stop) = try await coordinator.claimJob(freeMemory: SystemMemory.available() ?? .max) {
                    await runJob(claimed, stop: stop)
                    continue
                }
            } catch {
                logger.error("could not read queued jobs: \(error)")
            }
            await bells.jobs.wait(after: seen, upTo: .seconds(10))
        }
    }

    private func runJob(_ claimed: ClaimedJob, stop: StopSignal) async {
        let job = claimed.job
        let build = claimed.build
        var metadata: Logger.Metadata = ["build.id": "\(build.id)", "job.id": "\(job.id)", "job.name": "\(job.name)"]
        logger.info("job started", metadata: metadata)
        let report = await execute(claimed, stop: stop)
        if case .cancelled(.shutdown) = report.outcome {
            evaluations.forget(build.id)
            // Left running in the store: the next start queues it again.
            logger.notice("job interrupted by shutdown; it will run again at the next start", metadata: metadata)
            return
        }
        do {
            let details = JobDetails.markdown(job, report, logTail: JobDetails.tail(of: settings.paths.log(job.id)))
            let updated = try await coordinator.finishJob(job.id, report, details: details)
            if updated.state.isFinal { evaluations.forget(build.id) }
            metadata["outcome"] = "\(report.outcome)"
            logger.info("job finished", metadata: metadata.merging(["build.state": "\(updated.state.rawValue)"]) { $1 })
        } catch {
            logger.error("could not record the job's end", metadata: metadata.merging(["error": "\(error)"]) { $1 })
        }
    }

    /// Runs a claimed job, registered as running (a cancel of its build fires `stop`).
    private func execute(_ claimed: ClaimedJob, stop: StopSignal) async -> JobReport {
        let job = claimed.job
        defer {
            coordinator.forgetRunning(job.id)
            progress.remove(job.id)
        }
        let log: JobLogFile
        do {
            log = try JobLogFile(path: settings.paths.log(job.id), cap: settings.logCapBytes)
        } catch {
            return JobReport(outcome: .errored("cannot write the job log: \(error)"), duration: .zero)
        }
        defer { log.close() }
        if job.attempt > 1 { log.note("attempt \(job.attempt): the previous one was interrupted by a restart") }
        guard let repository = repositories[claimed.build.repositoryID] else {
            return JobReport(outcome: .errored("repository \(claimed.build.repository) is no longer configured"), duration: .zero)
        }
        // One evaluation for the build's jobs: the first job to start runs it, the others wait.
        let key = BuildEvaluations.Key(build: claimed.build.id, system: job.system)
        var (evaluation, ranHere) = await withTaskCancellationHandler {
            await evaluations.report(key) { await self.evaluate(claimed, repository, log: log, stop: stop) }
        } onCancel: {
            stop.request(.shutdown)
        }
        if evaluation.results[job.name] == nil, stop.reason == nil {
            // Evaluated without this job (its build's jobs could not be read then): once more, with it.
            evaluations.forget(claimed.build.id)
            (evaluation, ranHere) = await withTaskCancellationHandler {
                await evaluations.report(key) { await self.evaluate(claimed, repository, log: log, stop: stop) }
            } onCancel: {
                stop.request(.shutdown)
            }
        }
        if !ranHere { log.note("derivations from the build's evaluation: \(evaluation.summary)") }
        switch evaluation.results[job.name] {
        case nil:
            return JobReport(outcome: .errored("the build's evaluation left this job out"), duration: .zero)
        case .failed(let outcome, let messages)?:
            log.write(Array(messages.utf8))
            return JobReport(outcome: stop.reason.map(JobOutcome.cancelled) ?? outcome, duration: .zero)
        case .derivations(let derivations)?:
            if let reason = stop.reason {
                log.note("cancelled before the build started")
                return JobReport(outcome: .cancelled(reason), derivations: derivations, duration: .zero)
            }
            // Untrusted builds (fork pull requests) never push to the cache, nor images.
            var run = JobRun(
                name: job.name, derivations: derivations, timeout: job.timeout, maxSilent: job.maxSilent,
                pushToCache: job.cachePush && claimed.build.trusted, derivationLogDirectory: settings.paths.derivationLogs(job.id),
                missing: evaluation.missing(of: job.name), knownOutputs: evaluation.outputs)
            run.constraints = job.constraints
            run.buildOptions = claimed.build.adHoc?.buildOptions ?? AdHocBuildOptions()
            if let cachix = claimed.build.adHoc?.cachix {
                guard let push = settings.adHocSecrets.cachix(forRef: claimed.build.ref) else {
                    return JobReport(
                        outcome: .errored("the credentials for \(cachix) were lost when Kiln restarted; send the job again"),
                        duration: .zero)
                }
                run.cachix = push
            }
            var imageNotPushed: ImagePushResult?
            if let image = job.image {
                let values = ImageSpec.Placeholders(
                    build: "\(claimed.build.id)", timestamp: ImageSpec.Placeholders.timestamp(Date()),
                    commit: String(claimed.build.sha.prefix(12)))
                if !claimed.build.trusted {
                    imageNotPushed = .notPushed("the build is not trusted (a fork's pull request)")
                } else if let push = ImagePush.resolve(image, values: values, registries: settings.registries) {
                    run.image = push
                } else {
                    imageNotPushed = .notPushed("no registry is configured for \(image.host) (registries.NAME.host)")
                }
            }
            var report = await executor.run(
                run, log: ProgressSink(log: log, job: job, build: claimed.build, board: progress, coordinator: coordinator), stop: stop)
            // An ad-hoc build has one job: its secrets are done with.
            if run.cachix != nil, report.outcome != .cancelled(.shutdown) { settings.adHocSecrets.forget(ref: claimed.build.ref) }
            if let imageNotPushed, report.outcome == .succeeded {
                log.note(imageNotPushed.summary)
                report.image = imageNotPushed
            }
            return report
        }
    }
}

/// The repositories whose builds are being planned.
private final class BusyRepositories: Sendable {
    let set = Mutex<Set<RepositoryID>>([])
}

/// A job's log that also posts its progress on the board, and as events.
struct ProgressSink: LogSink {
    let log: JobLogFile
    let job: JobRecord
    let build: BuildRecord
    let board: ProgressBoard
    let coordinator: BuildCoordinator

    func write(_ chunk: [UInt8]) { log.write(chunk) }
    func progress(_ progress: JobProgress) {
        board.update(job.id, progress)
        coordinator.progress(progress, job: job.id, build: build.id, repository: build.repository)
    }
}
