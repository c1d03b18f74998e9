import Foundation
import KilnCore
import Logging

/// How Kiln runs nix.
public struct NixSettings: Sendable, Hashable {
    /// `nix` (looked up on PATH) or a path to it; `nix-store` is expected beside it.
    public var binary: String
    /// Extra `--option NAME VALUE` pairs (e.g. `substituters`); never `sandbox` or `sandbox-fallback`.
    public var options: [String: String]
    /// Time between SIGINT and SIGKILL when stopping a job.
    public var killGrace: Duration

    /// Creates settings.
    public init(binary: String = "nix", options: [String: String] = [:], killGrace: Duration = .seconds(10)) {
        self.binary = binary
        self.options = options
        self.killGrace = killGrace
    }

    /// Options no configuration may override.
    public static let enforcedOptions = ["sandbox": "true", "sandbox-fallback": "false"]
}

/// Builds jobs with nix, always inside the Nix sandbox.
///
/// A job is evaluated first (`nix path-info --derivation`, so evaluation errors fail the
/// job with nix's message) and then built (`nix-store --realise`, whose exit status tells
/// a build failure, 100, from a silent timeout, 101). Kiln enforces the wall-clock limit
/// itself; stopping sends SIGINT to nix's process group, waits a grace period, then kills
/// nix and every process it started, builders included.
public struct NixExecutor: Executor {
    private let settings: NixSettings

    /// Creates an executor.
    public init(settings: NixSettings) {
        self.settings = settings
    }

    /// The arguments every nix invocation gets, sandbox settings last so they win.
    var commonArguments: [String] {
        var arguments = ["--extra-experimental-features", "nix-command flakes"]
        for (name, value) in settings.options.sorted(by: { $0.key < $1.key })
        where NixSettings.enforcedOptions[name] == nil {
            arguments += ["--option", name, value]
        }
        for (name, value) in NixSettings.enforcedOptions.sorted(by: { $0.key < $1.key }) {
            arguments += ["--option", name, value]
        }
        return arguments
    }

    public func readiness() async -> Readiness {
        let nix: String
        let nixStore: String
        switch NixBinaries.resolve(settings.binary) {
        case .failure(let error): return .notReady(error.message)
        case .success(let binaries): (nix, nixStore) = binaries
        }
        do {
            let version = try await NixBinaries.capture(nix, ["--version"])
            let config = try await NixBinaries.capture(nix, ["show-config", "--json"] + commonArguments)
            if let problem = SandboxCheck.problem(inShowConfig: Array(config.utf8)) {
                return .notReady(problem)
            }
            _ = try await NixBinaries.capture(nixStore, ["--version"])
            let versionText = version.trimmingCharacters(in: .whitespacesAndNewlines)
            return .ready("\(versionText); sandbox = true, sandbox-fallback = false")
        } catch {
            return .notReady("\(error)")
        }
    }

    public func run(_ job: JobRun, log: any LogSink, stop: StopSignal) async -> JobReport {
        let started = ContinuousClock.now
        func report(_ outcome: JobOutcome, exitCode: Int32? = nil, outputs: [String] = []) -> JobReport {
            JobReport(outcome: outcome, exitCode: exitCode, outputs: outputs, duration: ContinuousClock.now - started)
        }
        let nix: String
        let nixStore: String
        switch NixBinaries.resolve(settings.binary) {
        case .failure(let error): return report(.errored(error.message))
        case .success(let binaries): (nix, nixStore) = binaries
        }
        let deadline = started + job.timeout
        return await withTaskCancellationHandler {
            // 1. Evaluate: installables → derivations.
            let evaluate = SupervisedProcess(
                executable: nix,
                arguments: ["path-info", "--derivation"] + commonArguments + ["--"]
                    + job.installables.map { job.isPlainTree ? Self.anchor($0, in: job.workspace) : $0 },
                workingDirectory: job.workspace, deadline: deadline, maxSilent: job.maxSilent, killGrace: settings.killGrace)
            log.note("evaluating \(job.installables.joined(separator: " "))")
            let evaluated: ProcessEnd
            do {
                evaluated = try await evaluate.run(log: log, stop: stop)
            } catch {
                return report(Self.interrupted(stop, error))
            }
            if let outcome = Self.stopped(evaluated, job) { return report(outcome, exitCode: evaluated.exitCode) }
            guard evaluated.exitCode == 0 else {
                let reason = "evaluation failed: " + NixMessages.lastError(evaluated.errorTail)
                return report(.failed(exitCode: evaluated.exitCode ?? -1, reason: reason), exitCode: evaluated.exitCode)
            }
            let derivations = Self.storePaths(evaluated.standardOutput)
            guard !derivations.isEmpty else {
                return report(.errored("nix evaluated \(job.installables.joined(separator: " ")) to no derivation"))
            }
            // 2. Build, in the sandbox, with nix's own silence limit as well as Kiln's.
            log.note("building \(derivations.count) derivation\(derivations.count == 1 ? "" : "s")")
            let silentSeconds = max(1, job.maxSilent.components.seconds)
            let build = SupervisedProcess(
                executable: nixStore,
                arguments: ["--realise", "--max-silent-time", String(silentSeconds)] + commonArguments.dropFirst(2)
                    + ["--"] + derivations,
                workingDirectory: job.workspace, deadline: deadline, maxSilent: job.maxSilent, killGrace: settings.killGrace)
            let built: ProcessEnd
            do {
                built = try await build.run(log: log, stop: stop)
            } catch {
                return report(Self.interrupted(stop, error))
            }
            if let outcome = Self.stopped(built, job) { return report(outcome, exitCode: built.exitCode) }
            let outputs = Self.storePaths(built.standardOutput)
            switch built.exitCode {
            case 0:
                for output in outputs { log.note("built \(output)") }
                return report(.succeeded, exitCode: 0, outputs: outputs)
            case let code? where code & 0xF0 == 0x60 && code & 0x01 != 0:
                return report(.timedOut(after: job.maxSilent, silent: true), exitCode: code)
            case let code? where code & 0xF0 == 0x60:
                return report(.failed(exitCode: code, reason: NixMessages.lastError(built.errorTail)), exitCode: code)
            case let code?:
                return report(
                    .errored("nix-store exited with \(code): \(NixMessages.lastError(built.errorTail))"), exitCode: code)
            case nil:
                return report(.errored("nix-store was killed by a signal: \(NixMessages.lastError(built.errorTail))"))
            }
        } onCancel: {
            stop.request(.shutdown)
        }
    }

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
            .filter { $0.hasPrefix("/nix/store/") || $0.hasPrefix("/") }
    }
}
