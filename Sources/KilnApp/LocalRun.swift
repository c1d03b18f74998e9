import Foundation
import KilnCore
import KilnNix
import KilnPipeline
import KilnStore
import Logging
import Synchronization

/// `kiln run`: plans a local checkout's pipeline and runs it with the real executor,
/// streaming each job's output to the terminal. It uses the server's code for every
/// decision: `PipelineFile`, `BuildPlan`, the `BuildCoordinator` (over a database in memory)
/// and `NixExecutor`; what it prints of jobs and the build comes from the coordinator's events.
public struct LocalRun: Sendable {
    /// The checkout to build.
    public var repository: String
    /// Run only this job (and the jobs it needs).
    public var job: String?
    /// The branch to plan for; nil reads the checkout's current branch.
    public var branch: String?
    /// How nix is run.
    public var nix: NixSettings
    /// Timeouts.
    public var limits: JobLimits

    /// Creates a local run.
    public init(repository: String, job: String?, branch: String?, nix: NixSettings, limits: JobLimits) {
        self.repository = repository
        self.job = job
        self.branch = branch
        self.nix = nix
        self.limits = limits
    }

    /// Runs the pipeline; returns the process exit status (0 when every job succeeded).
    public func run(output: Terminal = Terminal()) async -> Int32 {
        let file = repository + "/" + PipelineFile.name
        guard let data = FileManager.default.contents(atPath: file) else {
            output.error("\(file): no pipeline file; create \(PipelineFile.name) at the repository root")
            return 1
        }
        let spec: PipelineSpec
        switch PipelineFile.parse(Array(data)) {
        case .invalid(let diagnostics):
            for diagnostic in diagnostics { output.error(diagnostic.formatted(file: file)) }
            return 1
        case .valid(let valid): spec = valid
        }
        let ref = GitRef.branch(branch ?? Self.currentBranch(repository) ?? "main")
        var planned: [PlannedJob]
        switch BuildPlan.make(spec, for: .push(ref), limits: limits) {
        case .invalid(let diagnostics):
            for diagnostic in diagnostics { output.error(diagnostic.formatted(file: file)) }
            return 1
        case .skipped(let reason, _):
            guard job != nil else {
                output.note("nothing to run: \(reason); name a job with --job to run it anyway")
                return 0
            }
            guard case .jobs(let jobs) = BuildPlan.make(PipelineSpec(triggers: nil, jobs: spec.jobs), for: .push(.branch("main")), limits: limits)
            else { return 1 }
            planned = jobs
        case .jobs(let jobs): planned = jobs
        }
        if let job {
            guard planned.contains(where: { $0.name == job }) else {
                output.error("no job '\(job)' in \(file); jobs: \(planned.map(\.name).joined(separator: ", "))")
                return 1
            }
            planned = Self.closure(of: job, in: planned)
        }
        let executor = NixExecutor(settings: nix)
        let code = await execute(planned, ref: ref, output: output, executor: executor)
        // The kept nix-daemons end with the run, and their homes with them.
        await executor.close()
        return code
    }

    private func execute(_ planned: [PlannedJob], ref: GitRef, output: Terminal, executor: NixExecutor) async -> Int32 {
        if case .notReady(let reason) = await executor.readiness() {
            output.error("cannot build: \(reason)")
            return 1
        }
        do {
            // The server's lifecycle, over a database in memory: the coordinator decides, and
            // the terminal shows its events.
            let store = try SQLStore.inMemory()
            let coordinator = BuildCoordinator(store: store, logger: Logger(label: "kiln.run"))
            let repositoryID = try await store.syncRepositories([("local", repository)])[0]
            let build = try await coordinator.accept(
                NewDelivery(
                    forge: "local", deliveryID: "kiln-run", repositoryID: repositoryID, repository: repository, ref: ref,
                    sha: Self.head(repository) ?? String(repeating: "0", count: 40))
            ).buildID
            _ = try await coordinator.claimBuildToPlan(excluding: [])
            try await coordinator.finishPlanning(build, .planned(planned), resolution: nil)
            let events = EventPrinter(log: store, build: build, output: output)
            try await events.show()
            let jobs = try await store.buildDetails(build)?.jobs ?? []
            output.note("running \(jobs.count) job\(jobs.count == 1 ? "" : "s"): \(jobs.map(\.name).joined(separator: ", "))")
            let evaluations = await evaluate(jobs, build: build, executor: executor, coordinator: coordinator, output: output)
            var started = 0
            while let (claimed, stop) = try await coordinator.claimJob(freeMemory: .max) {
                started += 1
                let job = claimed.job
                let position = "[\(started)/\(jobs.count)] \(job.name)"
                output.progress("\(position): building")
                let report = await run(job, evaluations[job.system], executor: executor, log: output.prefixed(job.name, progressLabel: position), stop: stop)
                try await coordinator.finishJob(job.id, report, details: nil)
                coordinator.forgetRunning(job.id)
                try await events.show()
            }
            return try await store.buildDetails(build)?.build.state == .succeeded ? 0 : 1
        } catch {
            output.error("kiln run failed: \(error)")
            return 1
        }
    }

    /// One evaluation for every job of a system, as `kiln serve` does; the build's phase says so.
    private func evaluate(
        _ jobs: [JobRecord], build: BuildID, executor: NixExecutor, coordinator: BuildCoordinator, output: Terminal
    ) async -> [String?: EvaluationReport] {
        var evaluations: [String?: EvaluationReport] = [:]
        var found: [String: [String]] = [:]
        for job in jobs where evaluations[job.system] == nil {
            let request = EvaluationRequest(
                jobs: jobs.filter { $0.system == job.system }.map { EvaluationRequest.Job(name: $0.name, target: $0.target) },
                system: job.system, workspace: repository, isPlainTree: false)
            let count = request.jobs.count == 1 ? "1 job" : "\(request.jobs.count) jobs"
            output.progress("evaluating \(count)")
            await coordinator.notePhase(build, "evaluating \(count)", derivations: [:])
            let report = await executor.evaluate(request, log: output.prefixed("evaluation", progressLabel: "evaluating"), stop: StopSignal())
            evaluations[job.system] = report
            for case (let name, .derivations(let derivations)) in report.results { found[name] = derivations }
        }
        await coordinator.notePhase(build, "building \(jobs.count == 1 ? "1 job" : "\(jobs.count) jobs")", derivations: found)
        return evaluations
    }

    /// Builds a job's evaluated derivations, or reports why it has none.
    private func run(_ job: JobRecord, _ evaluation: EvaluationReport?, executor: NixExecutor, log: any LogSink, stop: StopSignal) async
        -> JobReport
    {
        switch evaluation?.results[job.name] {
        case .derivations(let derivations)?:
            let run = JobRun(
                name: job.name, derivations: derivations, timeout: job.timeout, maxSilent: job.maxSilent,
                missing: evaluation?.missing(of: job.name), knownOutputs: evaluation?.outputs ?? [:])
            return await executor.run(run, log: log, stop: stop)
        case .failed(let outcome, let messages)?:
            log.write(Array(messages.utf8))
            return JobReport(outcome: outcome, duration: .zero)
        case nil:
            return JobReport(outcome: .errored("the evaluation left this job out"), duration: .zero)
        }
    }

    /// The commit checked out in `repository` (`.git/HEAD`, through a loose ref); nil when unknown.
    static func head(_ repository: String) -> String? {
        guard var line = try? String(contentsOfFile: repository + "/.git/HEAD", encoding: .utf8) else { return nil }
        line = line.trimmingCharacters(in: .whitespacesAndNewlines)
        if line.hasPrefix("ref: ") {
            guard let target = try? String(contentsOfFile: repository + "/.git/" + line.dropFirst(5), encoding: .utf8) else {
                return nil
            }
            line = target.trimmingCharacters(in: .whitespacesAndNewlines)
        }
        return CommitID.isValid(line) ? line : nil
    }

    /// `name` and every job it needs, transitively, in plan order.
    static func closure(of name: String, in jobs: [PlannedJob]) -> [PlannedJob] {
        var wanted: Set<String> = [name]
        var frontier = [name]
        while let current = frontier.popLast() {
            for need in jobs.first(where: { $0.name == current })?.needs ?? [] where wanted.insert(need).inserted {
                frontier.append(need)
            }
        }
        return jobs.filter { wanted.contains($0.name) }
    }

    /// The branch checked out in `repository`, from `.git/HEAD`.
    static func currentBranch(_ repository: String) -> String? {
        guard let head = try? String(contentsOfFile: repository + "/.git/HEAD", encoding: .utf8) else { return nil }
        let line = head.trimmingCharacters(in: .whitespacesAndNewlines)
        guard line.hasPrefix("ref: refs/heads/") else { return nil }
        return String(line.dropFirst("ref: refs/heads/".count))
    }
}

/// Where `kiln run` writes: job output prefixed by job name, results, and a progress line.
public struct Terminal: Sendable {
    private let isInteractive = isatty(STDERR_FILENO) == 1

    /// A terminal on the process's standard output and error.
    public init() {}

    /// A line to standard error.
    public func error(_ line: String) { write(STDERR_FILENO, line + "\n") }

    /// A Kiln message to standard error.
    public func note(_ line: String) { write(STDERR_FILENO, "kiln: \(line)\n") }

    /// The progress line: rewritten in place on a terminal, printed once otherwise.
    public func progress(_ line: String) { write(STDERR_FILENO, isInteractive ? "\r\u{1B}[2K\(line)\r" : "\(line)\n") }

    /// A job's final state.
    public func result(_ job: String, _ state: StatusState, _ description: String) {
        let mark = state == .succeeded ? "✔" : (state == .cancelled ? "–" : "✘")
        write(STDERR_FILENO, "\(mark) \(job): \(description)\n")
    }

    /// A sink that writes a job's output to standard output, each line prefixed `job | `,
    /// and shows nix's progress on the progress line after `progressLabel`.
    public func prefixed(_ job: String, progressLabel: String) -> any LogSink {
        PrefixedSink(prefix: "\(job) | ", progressLabel: progressLabel, terminal: self)
    }

    private func write(_ descriptor: Int32, _ text: String) {
        var bytes = Array(text.utf8)
        bytes.withUnsafeMutableBytes { buffer in
            var offset = 0
            while offset < buffer.count {
                let written = Glibc.write(descriptor, buffer.baseAddress! + offset, buffer.count - offset)
                if written <= 0 { return }
                offset += written
            }
        }
    }
}

/// Prefixes each line of job output, and turns nix's progress into the progress line.
final class PrefixedSink: LogSink {
    private let prefix: [UInt8]
    private let progressLabel: String
    private let terminal: Terminal
    private let atLineStart = Mutex(true)

    init(prefix: String, progressLabel: String, terminal: Terminal) {
        self.prefix = Array(prefix.utf8)
        self.progressLabel = progressLabel
        self.terminal = terminal
    }

    func progress(_ progress: JobProgress) { terminal.progress("\(progressLabel): \(progress.summary)") }

    func write(_ chunk: [UInt8]) {
        var out: [UInt8] = []
        atLineStart.withLock { atStart in
            for byte in chunk {
                if atStart { out += prefix }
                out.append(byte)
                atStart = byte == UInt8(ascii: "\n")
            }
        }
        out.withUnsafeBytes { buffer in _ = Glibc.write(STDOUT_FILENO, buffer.baseAddress, buffer.count) }
    }
}
