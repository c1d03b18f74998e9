import Foundation
import KilnCore
import KilnPipeline

/// Builds jobs with nix, always inside the Nix sandbox, and accounts for what they cost.
///
/// A build's jobs are evaluated together first (`NixExecutor+Evaluation.swift`), so evaluation
/// errors fail each job with nix's message; each job then builds its derivations with a kept
/// `nix-daemon --stdio` (`NixDaemon.swift`) or, when it changes nix's settings, with
/// `nix-store --realise`; either way nix's answer tells a build failure (100) from a silent
/// timeout (101). Kiln enforces the wall-clock limit itself; stopping sends SIGINT to nix's
/// process group, waits a grace period, then kills nix and every process it started, builders
/// included.
public struct NixExecutor: Executor {
    let settings: NixSettings
    let hostInfo = HostInfoCache()
    /// The nix-daemons jobs build with, kept between jobs.
    let daemons = NixDaemonPool()
    let evaluationTurns: Turns

    /// Creates an executor.
    public init(settings: NixSettings) {
        self.settings = settings
        self.evaluationTurns = Turns(max(1, settings.maxParallelEvaluations))
    }

    /// Options every nix command gets, sandbox settings last so they win.
    var optionArguments: [String] { optionPairs.flatMap { ["--option", $0.name, $0.value] } }

    /// The configured options, then the enforced ones (which win).
    var optionPairs: [(name: String, value: String)] {
        settings.options.filter { NixSettings.enforcedOptions[$0.key] == nil }.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
            + NixSettings.enforcedOptions.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
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
        let ended = settings.processMark.map { ProcessMark(value: $0).endLeftovers() } ?? 0
        // The homes of a previous life's daemons (none of this life's has started yet).
        if let directory = settings.daemonDirectory { try? FileManager.default.removeItem(atPath: directory) }
        return ended
    }

    public func run(_ job: JobRun, log: any LogSink, stop: StopSignal) async -> JobReport {
        let started = ContinuousClock.now
        var run = JobRunState(job: job, started: started)
        let binaries: NixBinaries
        var session: NixSession
        switch openSession(log: log, stop: stop, deadline: started + job.timeout, workingDirectory: nil) {
        case .failure(let problem): return run.report(.errored(problem.message))
        case .success(let opened): (session, binaries) = opened
        }
        defer { session.close() }
        run.derivations = job.derivations
        return await withTaskCancellationHandler {
            guard !job.derivations.isEmpty else {
                log.note("nothing to build")
                return run.report(.succeeded, exitCode: 0, session)
            }
            // Build, in the sandbox, with nix's own silence limit as well as Kiln's. nix returns at
            // once for derivations already built, and waits for those another nix is building.
            let sandboxPaths: [String]
            switch await constraintArguments(job, binaries) {
            case .failure(let problem): return run.report(.failed(exitCode: 0, reason: problem.message), session)
            case .success(let paths): sandboxPaths = paths
            }
            log.note("building \(Self.count(job.derivations.count, "derivation"))")
            let renderer = NixLogRenderer(
                sink: log, derivationLogs: job.derivationLogDirectory, capPerDerivation: settings.derivationLogCap)
            let silentSeconds = max(1, job.maxSilent.components.seconds)
            let built: ProcessEnd
            let host = await host(binaries)
            // A kept nix-daemon builds the job when nothing of the job changes nix's settings and
            // no remote builder may take it: one nix process fewer for each job.
            let daemon: NixDaemonConnection?
            let named: [String: [(name: String, path: String)]]
            if sandboxPaths.isEmpty, job.buildOptions.arguments.isEmpty, host?.hasBuilders == false,
                // nil for a content-addressed output, whose path nix-store prints once it is built.
                let recorded = storeDatabase?.namedOutputs(of: job.derivations)
            {
                switch await daemons.take(start: { await startDaemon(binaries) }) {
                case .success(let kept): daemon = kept
                case .failure(let problem):
                    log.note("building with nix-store: \(problem)")
                    daemon = nil
                }
                named = recorded
            } else {
                (daemon, named) = (nil, [:])
            }
            // nix builds in its TMPDIR (the session's or the daemon's): the peak of its size is
            // the builds' storage.
            let storage = StorageSampler(directory: (daemon?.home ?? session.home) + "/tmp")
            do {
                defer {
                    renderer.finish()
                    run.peakStorageKilobytes = storage.stop()
                }
                if let daemon, let host {
                    built = await session.build(
                        on: daemon, job.derivations.map { $0 + "!" + (named[$0] ?? []).map(\.name).joined(separator: ",") },
                        settings: host.buildSettings, nixMaxSilent: .seconds(silentSeconds), maxSilent: job.maxSilent + .seconds(30),
                        killGrace: settings.killGrace, outputs: job.derivations.flatMap { (named[$0] ?? []).map(\.path).sorted() },
                        errorLine: { renderer.line($0) })
                    if built.stopCause == nil { daemons.give(daemon) } else { daemon.close() }
                } else {
                    // Without remote builders, nix's own build hook (a nix process) only declines,
                    // and starting it cost each job's nix 30 ms: a shell script in the session's
                    // private home declines instead.
                    var hook: [String] = []
                    if host?.hasBuilders == false, let script = try? Self.decliningBuildHook(in: session.home) {
                        hook = ["--option", "build-hook", script]
                    }
                    built = try await session.process(
                        binaries.nixStore,
                        ["--realise", "--max-silent-time", String(silentSeconds), "--log-format", "internal-json"]
                            + optionArguments + hook + sandboxPaths + job.buildOptions.arguments + ["--"] + job.derivations,
                        // nix stops a silent builder itself; Kiln's own limit is a backstop for a nix that hangs.
                        killGrace: settings.killGrace, maxSilent: job.maxSilent + .seconds(30), confined: false,
                        errorLine: { renderer.line($0) })
                }
            } catch {
                return run.report(Self.interrupted(stop, error), session)
            }
            run.built = renderer.builtDerivations.sorted()
            run.machines = Set(renderer.machines.values).sorted()
            run.failedDerivations = renderer.failedDerivations
            run.substituted = renderer.substituted.count
            run.built = run.built.filter { !run.failedDerivations.contains($0) }
            let unknown = run.built.filter { job.knownOutputs[$0] == nil }
            let learnt = unknown.isEmpty ? [:] : await outputsOf(unknown, binaries) ?? [:]
            for derivation in run.built { run.builtOutputs[derivation] = job.knownOutputs[derivation] ?? learnt[derivation] ?? [] }
            if let outcome = Self.stopped(built, timeout: job.timeout, maxSilent: job.maxSilent) {
                return run.report(outcome, exitCode: built.exitCode, session)
            }
            switch built.exitCode {
            case 0:
                break
            case let code? where code & 0xF0 == 0x60 && code & 0x01 != 0:
                return run.report(.timedOut(after: job.maxSilent, silent: true), exitCode: code, session)
            case let code? where code & 0xF0 == 0x60:
                return run.report(.failed(exitCode: code, reason: NixMessages.lastError(built.errorTail)), exitCode: code, session)
            case let code?:
                return run.report(
                    .errored("nix-store exited with \(code): \(NixMessages.lastError(built.errorTail))"), exitCode: code, session)
            case nil:
                return run.report(.errored("nix was killed by a signal: \(NixMessages.lastError(built.errorTail))"), session)
            }
            if let missing = job.missing {
                run.waitedFor = missing.filter { !renderer.builtDerivations.contains($0) }
                if missing.isEmpty {
                    log.note("all \(Self.count(job.derivations.count, "derivation")) of this job were in the store already; nothing to build")
                } else if !run.waitedFor.isEmpty {
                    log.note("\(Self.count(run.waitedFor.count, "derivation")) missing at evaluation were built meanwhile by another job (or substituted), not here: "
                        + run.waitedFor.map(NixLogRenderer.label).joined(separator: ", "))
                }
            }
            // What was built, as nix describes it.
            let outputs = NixExecutor.storePaths(built.standardOutput).map {
                BuiltOutput(name: Self.outputName($0, derivations: job.derivations), path: $0)
            }
            run.outputs = await describeOutputs(outputs, binaries, environment: session.environment)
            for output in run.outputs { log.note("built \(output.path)") }
            // The binary cache.
            if job.pushToCache {
                let pushed = await pushToCache(run.outputs.map(\.path), &session, binaries)
                run.cache = pushed
                if case .pushed = pushed { run.cachePushedBytes = await closureBytes(run.outputs.map(\.path), binaries) }
                if case .failed(let error, _) = pushed, settings.cache?.required == true {
                    return run.report(.failed(exitCode: 0, reason: "binary cache push failed: \(error)"), exitCode: 0, session)
                }
            }
            // A Cachix cache the job's request named: it asked for the push, so a failed one fails it.
            if let cachix = job.cachix {
                let pushed = await pushToCachix(cachix, run.outputs.map(\.path), &session, binaries)
                run.cache = pushed
                if case .failed(let error, _) = pushed {
                    return run.report(.failed(exitCode: 1, reason: "cachix push failed: \(error)"), exitCode: 1, session)
                }
            }
            // The image.
            if let image = job.image {
                let pushed = await pushImage(image, outputs: run.outputs, &session, binaries)
                run.image = pushed
                if pushed.outcome == .failed {
                    log.note(pushed.summary)
                    if image.required {
                        return run.report(.failed(exitCode: 0, reason: pushed.summary), exitCode: 0, session)
                    }
                }
            }
            return run.report(.succeeded, exitCode: 0, session)
        } onCancel: {
            stop.request(.shutdown)
        }
    }

    /// Opens a session for nix processes: the binaries, the jail and a private home (which
    /// `close()` removes).
    func openSession(log: any LogSink, stop: StopSignal, deadline: ContinuousClock.Instant, workingDirectory: String?)
        -> Result<(NixSession, NixBinaries), NixQueryError>
    {
        let binaries: NixBinaries
        switch NixBinaries.resolve(settings.binary) {
        case .failure(let error): return .failure(error)
        case .success(let found): binaries = found
        }
        let jail: EvaluationJail
        switch EvaluationJail.resolve() {
        case .failure(let error): return .failure(error)
        case .success(let found): jail = found
        }
        let home: String
        do {
            home = try ScrubbedEnvironment.makeHome(under: scratchDirectory)
        } catch {
            return .failure(NixQueryError(message: "could not make a private home for nix under \(scratchDirectory): \(error)"))
        }
        let session = NixSession(
            log: log, stop: stop, deadline: deadline, workingDirectory: workingDirectory ?? home, jail: jail, home: home,
            nixDirectories: binaries.directories, mark: settings.processMark.map(ProcessMark.init(value:)),
            sshOptions: settings.sshOptions)
        return .success((session, binaries))
    }

    /// Those of `derivations` whose outputs are not all in the store (`nix show-derivation`,
    /// `nix-store --check-validity`, one process each for all of them); nil when nix could not say.
    func missing(_ derivations: [String], _ binaries: NixBinaries) async -> (Set<String>?, [String: [String]]) {
        guard !derivations.isEmpty else { return ([], [:]) }
        guard let outputs = await outputsOf(derivations, binaries) else { return (nil, [:]) }
        if let valid = storeDatabase?.valid(Array(outputs.values.joined())) {
            return (Set(derivations.filter { outputs[$0]?.contains(where: { !valid.contains($0) }) ?? true }), outputs)
        }
        guard
            let invalid = try? await NixBinaries.capture(
                binaries.nixStore, ["--check-validity", "--print-invalid"] + outputs.values.joined())
        else { return (nil, outputs) }
        let absent = Set(Self.storePaths(Array(invalid.utf8)))
        return (Set(derivations.filter { outputs[$0]?.contains(where: absent.contains) ?? true }), outputs)
    }

    /// Each derivation's output paths, sorted (nix's store database, or `nix show-derivation`); nil
    /// when nix could not say.
    func outputsOf(_ derivations: [String], _ binaries: NixBinaries) async -> [String: [String]]? {
        if let recorded = storeDatabase?.outputs(of: derivations) { return recorded }
        guard
            let shown = try? await NixBinaries.capture(binaries.nix, ["show-derivation"] + commonArguments + ["--"] + derivations),
            let described = (try? JSONSerialization.jsonObject(with: Data(shown.utf8))) as? [String: [String: Any]]
        else { return nil }
        var outputs: [String: [String]] = [:]
        for derivation in derivations {
            guard let named = described[derivation]?["outputs"] as? [String: [String: Any]] else { return nil }
            let paths = named.values.compactMap { $0["path"] as? String }
            guard paths.count == named.count else { return nil }
            outputs[derivation] = paths.sorted()
        }
        return outputs
    }

    /// Writes, in `directory`, a build hook that declines every build for good (nix then builds
    /// here and asks no more): it answers on its standard error, as nix's own hook does, and reads
    /// what nix sends it until nix lets it go.
    static func decliningBuildHook(in directory: String) throws -> String {
        guard FileManager.default.isExecutableFile(atPath: "/bin/sh"), FileManager.default.isExecutableFile(atPath: "/bin/cat") else {
            throw CocoaError(.fileNoSuchFile)
        }
        let path = directory + "/decline-builds"
        let script = "#!/bin/sh\necho '# decline-permanently' >&2\nexec /bin/cat >/dev/null\n"
        guard FileManager.default.createFile(atPath: path, contents: Data(script.utf8), attributes: [.posixPermissions: 0o700]) else {
            throw CocoaError(.fileWriteUnknown)
        }
        return path
    }

    /// Lets the kept nix-daemons go and waits until they have ended (their homes are removed).
    public func close() async { await daemons.closeAll() }

    /// Starts a nix-daemon for builds, with Kiln's options, the declining build hook and a private
    /// home, or says why it could not (the job then builds with `nix-store --realise`).
    func startDaemon(_ binaries: NixBinaries) async -> Result<NixDaemonConnection, DaemonError> {
        guard let daemon = binaries.nixDaemon else {
            return .failure(DaemonError(description: "there is no nix-daemon beside \(binaries.nixStore)"))
        }
        let directory = settings.daemonDirectory ?? scratchDirectory
        let home: String
        let hook: String
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
            home = try ScrubbedEnvironment.makeHome(under: directory)
        } catch {
            return .failure(DaemonError(description: "could not make a home for nix-daemon under \(directory): \(error)"))
        }
        do {
            hook = try Self.decliningBuildHook(in: home)
        } catch {
            try? FileManager.default.removeItem(atPath: home)
            return .failure(DaemonError(description: "could not write nix-daemon's build hook in \(home): \(error)"))
        }
        var environment = ScrubbedEnvironment.variables(home: home)
        if let mark = settings.processMark.map(ProcessMark.init(value:)) { environment[mark.variable] = mark.value }
        do {
            return .success(
                try await NixDaemonConnection.start(
                    daemon, arguments: optionArguments + ["--option", "build-hook", hook], overrides: optionPairs + [("build-hook", hook)],
                    home: home, environment: environment, greetingLimit: settings.daemonGreetingLimit))
        } catch {
            return .failure(DaemonError(description: "\(daemon) could not be started: \(error)"))
        }
    }

    /// nix's store database, read directly where Kiln builds in the local store.
    var storeDatabase: NixStoreDatabase? { NixStoreDatabase.local(options: settings.options) }

    /// "1 derivation", "3 derivations".
    static func count(_ number: Int, _ noun: String) -> String { "\(number) \(noun)\(number == 1 ? "" : "s")" }

    /// `outputs` with their NAR hashes and sizes, as nix's store database (or `nix path-info`)
    /// describes them.
    private func describeOutputs(_ outputs: [BuiltOutput], _ binaries: NixBinaries, environment: [String: String]) async
        -> [BuiltOutput]
    {
        if let recorded = storeDatabase?.narInfo(outputs.map(\.path)) {
            return outputs.map { output in
                var output = output
                output.narHash = recorded[output.path]?.narHash
                output.narSize = recorded[output.path]?.narSize
                return output
            }
        }
        guard !outputs.isEmpty,
            let info = try? await NixBinaries.capture(
                binaries.nix, ["path-info", "--json"] + commonArguments + ["--"] + outputs.map(\.path), environment: environment),
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

    /// What nix says of this machine (read once).
    func host(_ binaries: NixBinaries) async -> HostInfo? {
        if let host = hostInfo.load() { return host }
        guard
            let config = try? await NixBinaries.capture(
                binaries.nix, ["show-config", "--json"] + commonArguments, environment: ScrubbedEnvironment.queryVariables)
        else { return nil }
        let host = HostInfo(showConfig: Array(config.utf8))
        hostInfo.store(host)
        return host
    }

    /// Why no builder can build for `system`, or nil when one can.
    func systemProblem(_ system: String, _ binaries: NixBinaries) async -> String? {
        guard let host = await host(binaries), !host.systems.contains(system) else { return nil }
        return "no builder for \(system): this machine builds \(host.systems.sorted().joined(separator: ", ")); add a machine for \(system) to nix.builders"
    }

    // MARK: Build constraints

    /// The options a job's constraints add to its build (`extra-sandbox-paths`), or why the job
    /// cannot be built with them.
    func constraintArguments(_ job: JobRun, _ binaries: NixBinaries) async -> Result<[String], NixQueryError> {
        let constraints = job.constraints
        var paths: [String] = []
        for path in constraints.readOnlyPaths {
            guard settings.allowedReadOnlyPaths.contains(path) else {
                return .failure(NixQueryError(message: "read-only path \(path) is not in this server's nix.allowed-read-only-paths"))
            }
            paths.append(path)
        }
        if constraints.provideBinSh { paths.append("/bin/sh=\(settings.sandboxShell)") }
        if constraints.network {
            // nix gives the network to fixed-output derivations only, and to no other.
            guard
                let shown = try? await NixBinaries.capture(binaries.nix, ["show-derivation"] + commonArguments + ["--"] + job.derivations),
                let described = (try? JSONSerialization.jsonObject(with: Data(shown.utf8))) as? [String: [String: Any]]
            else { return .failure(NixQueryError(message: "network: true, but nix could not describe the job's derivations")) }
            for derivation in job.derivations {
                let outputs = described[derivation]?["outputs"] as? [String: [String: Any]] ?? [:]
                guard outputs.values.contains(where: { $0["hash"] != nil }) else {
                    return .failure(
                        NixQueryError(
                            message:
                                "network: true, but \(NixLogRenderer.label(derivation)) is not a fixed-output derivation: nix gives the network only to those (set outputHash)"
                        ))
                }
            }
        }
        return .success(paths.isEmpty ? [] : ["--option", "extra-sandbox-paths", paths.joined(separator: " ")])
    }

    // MARK: Outcomes

    /// The outcome when Kiln stopped the process, or nil when it ended on its own.
    static func stopped(_ end: ProcessEnd, timeout: Duration, maxSilent: Duration) -> JobOutcome? {
        switch end.stopCause {
        case nil: return nil
        case .deadline: return .timedOut(after: timeout, silent: false)
        case .silence: return .timedOut(after: maxSilent, silent: true)
        case .memory(let kilobytes): return .failed(exitCode: -1, reason: "evaluation used more than \(ByteCount.format(kilobytes * 1024)) of memory (nix.eval-max-memory)")
        case .requested(let reason): return .cancelled(reason)
        }
    }

    static func interrupted(_ stop: StopSignal, _ error: any Error) -> JobOutcome {
        if let reason = stop.reason { return .cancelled(reason) }
        if error is CancellationError { return .cancelled(.shutdown) }
        return .errored("could not run nix: \(error)")
    }

    /// Where private nix homes are made.
    var scratchDirectory: String { settings.scratchDirectory ?? NSTemporaryDirectory() }

    /// Why a target's directory or file leaves the work tree through a symbolic link, or nil.
    static func symlinkProblem(_ target: JobTarget, in workspace: String) -> String? {
        let relative: [String]
        switch target {
        case .installables(let installables):
            relative = installables.map { String($0.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false)[0]) }
        case .classic(let file, _): relative = [file]
        case .flakeCheck: relative = []
        }
        let root = URL(fileURLWithPath: workspace).resolvingSymlinksInPath().path
        for path in relative where path != "." {
            let resolved = URL(fileURLWithPath: workspace + "/" + path).resolvingSymlinksInPath().path
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

/// What one job's run found, for its report.
private struct JobRunState {
    let job: JobRun
    let started: ContinuousClock.Instant
    var derivations: [String] = []
    var outputs: [BuiltOutput] = []
    var cache: CachePushResult?
    var image: ImagePushResult?
    var cachePushedBytes: Int64?
    var peakStorageKilobytes: Int?
    var built: [String] = []
    var waitedFor: [String] = []
    var builtOutputs: [String: [String]] = [:]
    var failedDerivations: [String] = []
    var substituted = 0
    var machines: [String] = []

    func report(_ outcome: JobOutcome, exitCode: Int32? = nil, _ session: NixSession? = nil) -> JobReport {
        var report = JobReport(
            outcome: outcome, exitCode: exitCode, derivations: derivations, outputs: outputs,
            duration: ContinuousClock.now - started, cpuSeconds: session?.cpuSeconds, peakMemoryKilobytes: session?.peakKilobytes,
            cache: cache, built: built, waitedFor: waitedFor, builtOutputs: builtOutputs, failedDerivations: failedDerivations)
        report.substituted = substituted
        report.image = image
        report.cachePushedBytes = cachePushedBytes
        report.peakStorageKilobytes = peakStorageKilobytes
        report.machines = machines
        return report
    }
}
