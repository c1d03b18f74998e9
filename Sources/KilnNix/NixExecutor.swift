import Foundation
import KilnCore
import KilnPipeline

/// Builds jobs with nix, always inside the Nix sandbox, and accounts for what they cost.
///
/// A job is evaluated first (`nix path-info --derivation`, `nix-instantiate`, or
/// `nix flake check --no-build` with its checks), so evaluation errors fail the job with nix's
/// message, then built with `nix-store --realise`, whose exit status tells a build failure
/// (100) from a silent timeout (101). Kiln enforces the wall-clock limit itself; stopping sends
/// SIGINT to nix's process group, waits a grace period, then kills nix and every process it
/// started, builders included.
public struct NixExecutor: Executor {
    private let settings: NixSettings
    private let hostInfo = HostInfoCache()

    /// Creates an executor.
    public init(settings: NixSettings) {
        self.settings = settings
    }

    /// Options every nix command gets, sandbox settings last so they win.
    var optionArguments: [String] {
        var arguments: [String] = []
        for (name, value) in settings.options.sorted(by: { $0.key < $1.key })
        where NixSettings.enforcedOptions[name] == nil {
            arguments += ["--option", name, value]
        }
        for (name, value) in NixSettings.enforcedOptions.sorted(by: { $0.key < $1.key }) {
            arguments += ["--option", name, value]
        }
        return arguments
    }

    /// The arguments of every `nix` (new-style) command.
    var commonArguments: [String] { ["--extra-experimental-features", "nix-command flakes"] + optionArguments }

    public func readiness() async -> Readiness {
        let binaries: NixBinaries
        switch NixBinaries.resolve(settings.binary) {
        case .failure(let error): return .notReady(error.message)
        case .success(let found): binaries = found
        }
        do {
            let version = try await NixBinaries.capture(binaries.nix, ["--version"])
            let config = try await NixBinaries.capture(binaries.nix, ["show-config", "--json"] + commonArguments)
            if let problem = SandboxCheck.problem(inShowConfig: Array(config.utf8)) {
                return .notReady(problem)
            }
            _ = try await NixBinaries.capture(binaries.nixStore, ["--version"])
            if let cache = settings.cache, !FileManager.default.isReadableFile(atPath: cache.secretKeyFile) {
                return .notReady("nix.cache.secret-key-file \(cache.secretKeyFile) cannot be read")
            }
            if case .failure(let error) = EvaluationJail.resolve() { return .notReady(error.message) }
            // What nix says of its settings is not enough (a daemon may ignore an untrusted
            // client's options): a test build must fail to read the host and reach its network.
            // In the system's temporary directory: a builder running unsandboxed as a nixbld user
            // must be able to reach the canary, which a private data directory would hide.
            let probe = SandboxProbe(binaries: binaries, options: optionArguments, scratch: NSTemporaryDirectory())
            if let problem = await probe.problem() {
                return .notReady(problem)
            }
            let host = HostInfo(showConfig: Array(config.utf8))
            hostInfo.store(host)
            let versionText = version.trimmingCharacters(in: .whitespacesAndNewlines)
            return .ready("\(versionText); sandbox = true, sandbox-fallback = false; builds for \(host.systems.sorted().joined(separator: ", "))")
        } catch {
            return .notReady("\(error)")
        }
    }

    public func endLeftoverProcesses() async -> Int {
        settings.processMark.map { ProcessMark(value: $0).endLeftovers() } ?? 0
    }

    public func run(_ job: JobRun, log: any LogSink, stop: StopSignal) async -> JobReport {
        var run = Run(job: job, log: log, stop: stop, started: .now)
        run.mark = settings.processMark.map(ProcessMark.init(value:))
        let binaries: NixBinaries
        switch NixBinaries.resolve(settings.binary) {
        case .failure(let error): return run.report(.errored(error.message))
        case .success(let found): binaries = found
        }
        switch EvaluationJail.resolve() {
        case .failure(let error): return run.report(.errored(error.message))
        case .success(let jail): run.jail = jail
        }
        // Checked by `kiln check` too; here again, with symbolic links resolved in the work tree.
        if let problem = job.target.confinementProblem ?? Self.symlinkProblem(job) {
            log.note(problem)
            return run.report(.failed(exitCode: -1, reason: problem))
        }
        do {
            run.home = try ScrubbedEnvironment.makeHome(under: scratchDirectory)
        } catch {
            return run.report(.errored("could not make a private home for nix under \(scratchDirectory): \(error)"))
        }
        defer { try? FileManager.default.removeItem(atPath: run.home) }
        run.nixDirectories = binaries.directories
        return await withTaskCancellationHandler {
            if let system = job.system, let problem = await systemProblem(system, binaries) {
                log.note(problem)
                return run.report(.errored(problem))
            }
            // 1. Evaluate: what the job names → derivations.
            let derivations: [String]
            switch await evaluate(&run, binaries) {
            case .success(let found): derivations = found
            case .failure(let ended): return run.report(ended.outcome, exitCode: ended.exitCode)
            }
            run.derivations = derivations
            guard !derivations.isEmpty else {
                log.note("nothing to build")
                return run.report(.succeeded, exitCode: 0)
            }
            // 2. Build, in the sandbox, with nix's own silence limit as well as Kiln's.
            log.note("building \(derivations.count) derivation\(derivations.count == 1 ? "" : "s")")
            let renderer = NixLogRenderer(
                sink: log, derivationLogs: job.derivationLogDirectory, capPerDerivation: settings.derivationLogCap)
            defer { renderer.finish() }
            let silentSeconds = max(1, job.maxSilent.components.seconds)
            let built: ProcessEnd
            do {
                built = try await run.process(
                    binaries.nixStore,
                    ["--realise", "--max-silent-time", String(silentSeconds), "--log-format", "internal-json"]
                        + optionArguments + ["--"] + derivations,
                    // nix stops a silent builder itself; Kiln's own limit is a backstop for a nix that hangs.
                    killGrace: settings.killGrace, maxSilent: job.maxSilent + .seconds(30), confined: false,
                    errorLine: { renderer.line($0) })
            } catch {
                return run.report(Self.interrupted(stop, error))
            }
            if let outcome = Self.stopped(built, job) { return run.report(outcome, exitCode: built.exitCode) }
            switch built.exitCode {
            case 0:
                break
            case let code? where code & 0xF0 == 0x60 && code & 0x01 != 0:
                return run.report(.timedOut(after: job.maxSilent, silent: true), exitCode: code)
            case let code? where code & 0xF0 == 0x60:
                return run.report(.failed(exitCode: code, reason: NixMessages.lastError(built.errorTail)), exitCode: code)
            case let code?:
                return run.report(
                    .errored("nix-store exited with \(code): \(NixMessages.lastError(built.errorTail))"), exitCode: code)
            case nil:
                return run.report(.errored("nix-store was killed by a signal: \(NixMessages.lastError(built.errorTail))"))
            }
            // 3. What was built, as nix describes it.
            run.outputs = await describeOutputs(
                derivations, paths: NixExecutor.storePaths(built.standardOutput), binaries, environment: run.environment)
            for output in run.outputs { log.note("built \(output.path)") }
            // 4. The binary cache.
            if job.pushToCache {
                let pushed = await pushToCache(&run, binaries)
                run.cache = pushed
                if case .failed(let error, _) = pushed, settings.cache?.required == true {
                    return run.report(.failed(exitCode: 0, reason: "binary cache push failed: \(error)"), exitCode: 0)
                }
            }
            return run.report(.succeeded, exitCode: 0)
        } onCancel: {
            stop.request(.shutdown)
        }
    }

    // MARK: Phases

    private func evaluate(_ run: inout Run, _ binaries: NixBinaries) async -> Result<[String], Ended> {
        let job = run.job
        let systemArguments = job.system.map { ["--option", "system", $0] } ?? []
        let flake = job.isPlainTree ? "path:\(job.workspace)" : "."
        let log = run.log
        let raw = { @Sendable (line: ArraySlice<UInt8>) in log.write(Array(line) + [0x0A]) }
        do {
            switch job.target {
            case .installables(let installables):
                run.log.note("evaluating \(installables.joined(separator: " "))")
                let ended = try await run.process(
                    binaries.nix,
                    ["path-info", "--derivation"] + commonArguments + systemArguments + ["--"]
                        + installables.map { job.isPlainTree ? Self.anchor($0, in: job.workspace) : $0 },
                    killGrace: settings.killGrace, errorLine: raw)
                return Self.derivations(ended, job)
            case .classic(let file, let attribute):
                run.log.note("evaluating \(file)" + (attribute.map { " -A \($0)" } ?? ""))
                let ended = try await run.process(
                    binaries.nixInstantiate,
                    ["./" + file] + (attribute.map { ["-A", $0] } ?? []) + optionArguments + systemArguments
                        // restrict-eval allows the search path only: the work tree and nothing else.
                        + ["-I", job.workspace],
                    killGrace: settings.killGrace, errorLine: raw)
                return Self.derivations(ended, job)
            case .flakeCheck:
                run.log.note("checking the flake (nix flake check --no-build)")
                let checked = try await run.process(
                    binaries.nix, ["flake", "check", "--no-build"] + commonArguments + systemArguments + [flake],
                    killGrace: settings.killGrace, errorLine: raw)
                if case .failure(let ended) = Self.derivations(checked, job) { return .failure(ended) }
                let system = job.system ?? hostInfo.load()?.system ?? "x86_64-linux"
                let listed = try await run.process(
                    binaries.nix,
                    ["eval", "--json"] + commonArguments + systemArguments
                        + ["\(flake)#checks.\(system)", "--apply", "builtins.mapAttrs (name: check: check.drvPath)"],
                    killGrace: settings.killGrace, errorLine: raw)
                if listed.exitCode != 0, listed.stopCause == nil,
                    String(decoding: listed.errorTail, as: UTF8.self).contains("does not provide attribute")
                {
                    run.log.note("the flake has no checks for \(system)")
                    return .success([])
                }
                if case .failure(let ended) = Self.derivations(listed, job) { return .failure(ended) }
                let checks = (try? JSONSerialization.jsonObject(with: Data(listed.standardOutput))) as? [String: String] ?? [:]
                return .success(checks.sorted { $0.key < $1.key }.map(\.value))
            }
        } catch {
            return .failure(Ended(outcome: Self.interrupted(run.stop, error), exitCode: nil))
        }
    }

    /// Store paths on an evaluation's standard output, or how the evaluation ended.
    private static func derivations(_ ended: ProcessEnd, _ job: JobRun) -> Result<[String], Ended> {
        if let outcome = stopped(ended, job) { return .failure(Ended(outcome: outcome, exitCode: ended.exitCode)) }
        guard ended.exitCode == 0 else {
            let reason = "evaluation failed: " + NixMessages.lastError(ended.errorTail)
            return .failure(Ended(outcome: .failed(exitCode: ended.exitCode ?? -1, reason: reason), exitCode: ended.exitCode))
        }
        return .success(storePaths(ended.standardOutput).filter { $0.hasSuffix(".drv") })
    }

    /// Output names, paths, NAR hashes and sizes of what `derivations` built (`paths`, as
    /// `nix-store --realise` printed them). The names follow from the paths: nix names output
    /// `out` after the derivation and any other output `<name>-<output>`.
    private func describeOutputs(
        _ derivations: [String], paths: [String], _ binaries: NixBinaries, environment: [String: String]
    ) async -> [BuiltOutput] {
        let outputs = paths.map { BuiltOutput(name: Self.outputName($0, derivations: derivations), path: $0) }
        guard !outputs.isEmpty,
            let info = try? await NixBinaries.capture(
                binaries.nix, ["path-info", "--json"] + commonArguments + ["--"] + paths, environment: environment),
            let entries = (try? JSONSerialization.jsonObject(with: Data(info.utf8))) as? [[String: Any]]
        else { return outputs }
        let byPath = Dictionary(entries.compactMap { entry in (entry["path"] as? String).map { ($0, entry) } }, uniquingKeysWith: { a, _ in a })
        return outputs.map { output in
            var output = output
            output.narHash = byPath[output.path]?["narHash"] as? String
            output.narSize = (byPath[output.path]?["narSize"] as? NSNumber)?.int64Value
            return output
        }
    }

    /// The output name of store path `path` built by one of `derivations`.
    static func outputName(_ path: String, derivations: [String]) -> String {
        let name = storeName(path)
        let candidates = derivations.map { String(storeName($0).dropLast(4)) }.sorted { $0.count > $1.count }
        for candidate in candidates {
            if name == candidate { return "out" }
            if name.hasPrefix(candidate + "-") { return String(name.dropFirst(candidate.count + 1)) }
        }
        return "out"
    }

    /// `/nix/store/<hash>-hello-1.0` → `hello-1.0`.
    static func storeName(_ path: String) -> String {
        String((path as NSString).lastPathComponent.dropFirst(33))
    }

    /// Signs the outputs' closure and copies it to the cache, retrying with backoff.
    private func pushToCache(_ run: inout Run, _ binaries: NixBinaries) async -> CachePushResult {
        guard let cache = settings.cache else { return .notPushed("this server has no nix.cache") }
        let paths = run.outputs.map(\.path)
        guard !paths.isEmpty else { return .notPushed("nothing was built") }
        var lastError = ""
        for attempt in 1...3 {
            if attempt > 1 {
                let delay = Duration.seconds(1 << (attempt - 2))
                run.log.note("retrying the binary cache push in \(HumanDuration.format(delay))")
                try? await Task.sleep(for: delay)
            }
            let log = run.log
            // nix names the store URL in its messages: the log gets it without credentials.
            let raw = { @Sendable (line: ArraySlice<UInt8>) in
                log.write(Array(cache.redacting(String(decoding: line, as: UTF8.self)).utf8) + [0x0A])
            }
            do {
                run.log.note("signing and pushing \(paths.count) path\(paths.count == 1 ? "" : "s") to \(cache.displayURL)")
                let signed = try await run.process(
                    binaries.nix, ["store", "sign", "--key-file", cache.secretKeyFile, "--recursive"] + commonArguments + ["--"] + paths,
                    killGrace: settings.killGrace, confined: false, errorLine: raw)
                guard signed.exitCode == 0, signed.stopCause == nil else {
                    lastError = "signing failed: " + NixMessages.lastError(signed.errorTail)
                    continue
                }
                let copied = try await run.process(
                    binaries.nix, ["copy", "--to", cache.pushTo] + commonArguments + ["--"] + paths,
                    killGrace: settings.killGrace, confined: false, errorLine: raw)
                guard copied.exitCode == 0, copied.stopCause == nil else {
                    lastError = NixMessages.lastError(copied.errorTail)
                    continue
                }
                return .pushed(to: cache.displayURL, attempts: attempt)
            } catch {
                lastError = "\(error)"
            }
        }
        lastError = cache.redacting(lastError)
        run.log.note("binary cache push failed: \(lastError)")
        return .failed(lastError, attempts: 3)
    }

    /// Why no builder can build for `system`, or nil when one can.
    private func systemProblem(_ system: String, _ binaries: NixBinaries) async -> String? {
        var host = hostInfo.load()
        if host == nil,
            let config = try? await NixBinaries.capture(
                binaries.nix, ["show-config", "--json"] + commonArguments, environment: ScrubbedEnvironment.queryVariables)
        {
            host = HostInfo(showConfig: Array(config.utf8))
            hostInfo.store(host!)
        }
        guard let host, !host.systems.contains(system) else { return nil }
        return "no builder for \(system): this machine builds \(host.systems.sorted().joined(separator: ", ")); add a machine for \(system) to nix.builders"
    }

    // MARK: Outcomes

    /// The outcome when Kiln stopped the process, or nil when it ended on its own.
    private static func stopped(_ end: ProcessEnd, _ job: JobRun) -> JobOutcome? {
        switch end.stopCause {
        case nil: return nil
        case .deadline: return .timedOut(after: job.timeout, silent: false)
        case .silence: return .timedOut(after: job.maxSilent, silent: true)
        case .requested(let reason): return .cancelled(reason)
        }
    }

    private static func interrupted(_ stop: StopSignal, _ error: any Error) -> JobOutcome {
        if let reason = stop.reason { return .cancelled(reason) }
        if error is CancellationError { return .cancelled(.shutdown) }
        return .errored("could not run nix: \(error)")
    }

    /// Where private nix homes are made.
    private var scratchDirectory: String { settings.scratchDirectory ?? NSTemporaryDirectory() }

    /// Why a target's directory or file leaves the work tree through a symbolic link, or nil.
    static func symlinkProblem(_ job: JobRun) -> String? {
        let relative: [String]
        switch job.target {
        case .installables(let installables):
            relative = installables.map { String($0.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false)[0]) }
        case .classic(let file, _): relative = [file]
        case .flakeCheck: relative = []
        }
        let root = URL(fileURLWithPath: job.workspace).resolvingSymlinksInPath().path
        for path in relative where path != "." {
            let resolved = URL(fileURLWithPath: job.workspace + "/" + path).resolvingSymlinksInPath().path
            guard resolved == root || resolved.hasPrefix(root + "/") else {
                return "'\(path)' leads outside the repository through a symbolic link"
            }
        }
        return nil
    }

    /// A workspace-relative installable (`.`, `.#attr`, `./dir#attr`) as a `path:` flake
    /// reference to the workspace, so nix reads the tree itself rather than a git repository
    /// that happens to enclose it. Other installables (`github:…`, `nixpkgs#…`) are unchanged.
    static func anchor(_ installable: String, in workspace: String) -> String {
        if installable == "." || installable.hasPrefix(".#") {
            return "path:\(workspace)" + installable.dropFirst()
        }
        if installable.hasPrefix("./") {
            return "path:\(workspace)/" + installable.dropFirst(2)
        }
        return installable
    }

    /// Absolute store paths, one per line, in order.
    static func storePaths(_ output: [UInt8]) -> [String] {
        String(decoding: output, as: UTF8.self).split(whereSeparator: \.isNewline)
            .map { $0.trimmingCharacters(in: .whitespaces) }
            .filter { $0.hasPrefix("/") }
    }
}

/// How a phase ended early.
private struct Ended: Error {
    var outcome: JobOutcome
    var exitCode: Int32?
}

/// One job's run: its processes, their accounting, and what it found.
private struct Run {
    let job: JobRun
    let log: any LogSink
    let stop: StopSignal
    let started: ContinuousClock.Instant
    var derivations: [String] = []
    var outputs: [BuiltOutput] = []
    var cache: CachePushResult?
    var cpuSeconds: Double?
    var peakKilobytes: Int?
    /// The jail evaluations run in, and the private home every nix process gets.
    var jail = EvaluationJail(bubblewrap: "/usr/bin/bwrap")
    var home = ""
    var nixDirectories: [String] = []
    var mark: ProcessMark?
    var environment: [String: String] {
        var variables = ScrubbedEnvironment.variables(home: home)
        if let mark { variables[mark.variable] = mark.value }
        return variables
    }

    init(job: JobRun, log: any LogSink, stop: StopSignal, started: ContinuousClock.Instant) {
        self.job = job
        self.log = log
        self.stop = stop
        self.started = started
    }

    /// Runs one nix process under the job's wall-clock limit (and `maxSilent`, for builds) and
    /// adds up what it cost.
    /// `confined` processes evaluate, so they run in the evaluation jail; the others (building,
    /// signing, copying) run nix's own sandbox or no repository code at all. All of them get the
    /// scrubbed environment.
    mutating func process(
        _ executable: String, _ arguments: [String], killGrace: Duration, maxSilent: Duration? = nil, confined: Bool = true,
        errorLine: @escaping @Sendable (ArraySlice<UInt8>) -> Void
    ) async throws -> ProcessEnd {
        let argv =
            confined
            ? jail.command(
                executable, arguments, workspace: job.workspace, home: home, nixDirectories: nixDirectories,
                environment: environment)
            : [executable] + arguments
        let ended = try await SupervisedProcess(
            executable: argv[0], arguments: Array(argv.dropFirst()), environment: environment, workingDirectory: job.workspace,
            deadline: started + job.timeout, maxSilent: maxSilent, killGrace: killGrace
        ).run(log: log, stop: stop, errorLine: errorLine)
        if let cpu = ended.cpuSeconds { cpuSeconds = (cpuSeconds ?? 0) + cpu }
        peakKilobytes = max(peakKilobytes ?? 0, ended.peakKilobytes)
        return ended
    }

    func report(_ outcome: JobOutcome, exitCode: Int32? = nil) -> JobReport {
        JobReport(
            outcome: outcome, exitCode: exitCode, derivations: derivations, outputs: outputs,
            duration: ContinuousClock.now - started, cpuSeconds: cpuSeconds, peakMemoryKilobytes: peakKilobytes,
            cache: cache)
    }
}
