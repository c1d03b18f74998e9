import Foundation
import KilnCore
import KilnPipeline
import Synchronization

/// Evaluation: a build's jobs → their derivations, once for all of them.
///
/// The flake installables of one flake are evaluated by one `nix eval` of the locked flake
/// (so what every attribute shares, such as an imported nixpkgs, is evaluated once), the
/// classic `file`/`attr` targets of one file by one `nix-instantiate --eval`. Both follow nix's
/// own rules for finding an attribute and collecting derivations. When that shared evaluation
/// fails, each of its jobs is evaluated alone with the command a job would run by hand
/// (`nix path-info --derivation`, `nix-instantiate`), so each failing job gets nix's own message
/// and the others their derivations. Everything runs in the evaluation jail, under
/// `nix.eval-timeout` and `nix.eval-max-memory`, and at most `nix.max-parallel-evals` at once.
extension NixExecutor {
    public func evaluate(_ request: EvaluationRequest, log: any LogSink, stop: StopSignal) async -> EvaluationReport {
        let started = ContinuousClock.now
        guard !request.jobs.isEmpty else { return EvaluationReport(results: [:], summary: "nothing to evaluate", duration: .zero) }
        if let recorded = request.recorded, let derivations = await stillValid(recorded, for: request) {
            let summary = "the derivations evaluated for \(recorded.source) (same tree and pipeline) are still in the store: not evaluating again"
            log.note(summary)
            var report = EvaluationReport(
                results: derivations.mapValues { .derivations($0) }, summary: summary, duration: ContinuousClock.now - started)
            (report.missing, report.outputs) = await missingFromTheStore(report)
            return report
        }
        if !evaluationTurns.tryTake() {
            log.note("waiting for another evaluation to end (nix.max-parallel-evals: \(settings.maxParallelEvaluations))")
            repeat {
                if let reason = stop.reason { return .all(request, .cancelled(reason), log: "cancelled before evaluation") }
                try? await Task.sleep(for: .milliseconds(100))
            } while !evaluationTurns.tryTake()
        }
        var report = await evaluateHoldingATurn(request, log: log, stop: stop, started: started)
        evaluationTurns.give()
        (report.missing, report.outputs) = await missingFromTheStore(report)
        return report
    }

    /// Evaluates `request`; the caller holds one of the `nix.max-parallel-evals` turns.
    private func evaluateHoldingATurn(
        _ request: EvaluationRequest, log: any LogSink, stop: StopSignal, started: ContinuousClock.Instant
    ) async -> EvaluationReport {
        if let reason = stop.reason {
            return .all(request, .cancelled(reason), log: "cancelled before evaluation")
        }
        let binaries: NixBinaries
        var session: NixSession
        switch openSession(log: log, stop: stop, deadline: .now + settings.evalTimeout, workingDirectory: request.workspace) {
        case .failure(let problem): return .all(request, .errored(problem.message), log: problem.message)
        case .success(let opened): (session, binaries) = opened
        }
        defer { session.close() }
        return await withTaskCancellationHandler {
            var evaluation = Evaluation(request: request)
            if let system = request.system, let problem = await systemProblem(system, binaries) {
                log.note(problem)
                return .all(request, .errored(problem), log: problem)
            }
            let groups = evaluation.groups()
            let total = groups.reduce(0) { $0 + $1.jobs.count }
            let system = await system(request, binaries) ?? "this machine's system"
            log.note("evaluating \(NixExecutor.count(total, "job")) for \(system)")
            for group in groups {
                if let outcome = evaluation.stopped {
                    for job in group.jobs { evaluation.results[job.name] = .failed(outcome, log: "") }
                    continue
                }
                if group.jobs.count > 1, case .shared(let kind) = group.kind {
                    switch await evaluateTogether(kind, group.jobs, request, &session, binaries) {
                    case .success(let found):
                        for (name, derivations) in found { evaluation.results[name] = .derivations(derivations) }
                        continue
                    case .failure(.stopped(let outcome)):
                        evaluation.stop(group.jobs, outcome)
                        continue
                    case .failure(.failed(let why)):
                        log.note("\(why); evaluating its \(group.jobs.count) jobs one by one to tell which fail")
                    }
                }
                for job in group.jobs {
                    if let outcome = evaluation.stopped {
                        evaluation.results[job.name] = .failed(outcome, log: "")
                        continue
                    }
                    let result = await evaluateAlone(job, request, &session, binaries)
                    if case .failed(let outcome, _) = result, Self.stopsEverything(outcome) { evaluation.stopped = outcome }
                    evaluation.results[job.name] = result
                }
            }
            let failed = evaluation.results.values.filter { if case .failed = $0 { true } else { false } }.count
            var summary = "evaluated \(NixExecutor.count(request.jobs.count, "job")) for \(system) in \(HumanDuration.format(ContinuousClock.now - started))"
            if let peak = session.peakKilobytes { summary += ", evaluator's peak memory \(ByteCount.format(peak * 1024))" }
            if failed > 0 { summary += "; \(failed) failed" }
            log.note(summary)
            return EvaluationReport(
                results: evaluation.results, summary: summary, duration: ContinuousClock.now - started,
                cpuSeconds: session.cpuSeconds, peakMemoryKilobytes: session.peakKilobytes)
        } onCancel: {
            stop.request(.shutdown)
        }
    }

    /// Which derivations the report found are not in the store yet: the jobs then tell what
    /// they built from what another job built meanwhile.
    private func missingFromTheStore(_ report: EvaluationReport) async -> (Set<String>?, [String: [String]]) {
        guard case .success(let binaries) = NixBinaries.resolve(settings.binary) else { return (nil, [:]) }
        let found = report.results.values.flatMap { result -> [String] in
            if case .derivations(let derivations) = result { return derivations }
            return []
        }
        return await missing(Array(Set(found)).sorted(), binaries)
    }

    /// The system `request` evaluates for: its own, or this machine's; nil when nix does not say.
    func system(_ request: EvaluationRequest, _ binaries: NixBinaries) async -> String? {
        if let system = request.system { return system }
        return await host(binaries)?.system
    }

    /// The recorded derivations, when every job of `request` has some and all are still in the store.
    private func stillValid(_ recorded: RecordedEvaluation, for request: EvaluationRequest) async -> [String: [String]]? {
        var derivations: [String: [String]] = [:]
        for job in request.jobs {
            guard let found = recorded.derivations[job.name], !found.isEmpty else { return nil }
            derivations[job.name] = found
        }
        let all = Set(derivations.values.joined()).sorted()
        if let valid = storeDatabase?.valid(all) { return valid.count == all.count ? derivations : nil }
        guard case .success(let binaries) = NixBinaries.resolve(settings.binary),
            let invalid = try? await NixBinaries.capture(
                binaries.nixStore, ["--check-validity", "--print-invalid", "--"] + Set(derivations.values.joined()).sorted()),
            Self.storePaths(Array(invalid.utf8)).isEmpty
        else { return nil }
        return derivations
    }

    /// Whether an evaluation outcome ends the evaluation of every other job too.
    private static func stopsEverything(_ outcome: JobOutcome) -> Bool {
        switch outcome {
        case .cancelled, .timedOut: return true
        case .failed, .errored, .succeeded: return false
        }
    }

    // MARK: Together

    /// Evaluates `jobs` (all of one flake or one classic file) in one nix process. Returns each
    /// job's derivations; a failure says why, without telling which job caused it.
    private func evaluateTogether(
        _ kind: Evaluation.SharedKind, _ jobs: [EvaluationRequest.Job], _ request: EvaluationRequest,
        _ session: inout NixSession, _ binaries: NixBinaries
    ) async -> Result<[String: [String]], SharedFailure> {
        let systemArguments = request.system.map { ["--option", "system", $0] } ?? []
        let log = session.log
        let raw = { @Sendable (line: ArraySlice<UInt8>) in log.write(Array(line) + [0x0A]) }
        let command: (String, [String])
        do {
            switch kind {
            case .flake(let reference):
                // A locked reference, so that the pure evaluation may read it with getFlake.
                let flake = request.isPlainTree ? NixExecutor.anchor(reference, in: request.workspace) : reference
                let metadata = try await session.process(
                    binaries.nix, ["flake", "metadata", "--json"] + commonArguments + ["--", flake],
                    killGrace: settings.killGrace, maxResidentKilobytes: settings.evalMaxMemoryKilobytes, errorLine: raw)
                if let outcome = Self.stopped(metadata, timeout: settings.evalTimeout, maxSilent: settings.evalTimeout) {
                    return .failure(.stopped(outcome))
                }
                guard metadata.exitCode == 0,
                    let described = (try? JSONSerialization.jsonObject(with: Data(metadata.standardOutput))) as? [String: Any],
                    let url = described["url"] as? String,
                    let locked = described["locked"] as? [String: Any], locked["narHash"] != nil || locked["rev"] != nil
                else {
                    return .failure(.failed("the flake \(reference) could not be locked (uncommitted changes?)"))
                }
                guard let system = await system(request, binaries) else {
                    return .failure(.failed("nix did not say which system this machine builds for (`nix show-config --json` has no `system`); check that nix runs, or give the job a `system`"))
                }
                let json = try Self.json([
                    "url": url,
                    "jobs": Dictionary(uniqueKeysWithValues: jobs.map { job in
                        (job.name, job.target.installables.map { Self.attributeCandidates($0, system: system) })
                    }),
                ])
                // The request is data in a string literal: nothing of it is read as nix code.
                let expression = Self.flakeExpression.replacingOccurrences(of: "@REQUEST@", with: NixString.literal(json))
                command = (binaries.nix, ["eval", "--json"] + commonArguments + systemArguments + ["--expr", expression])
            case .classic(let file):
                let json = try Self.json([
                    "file": file,
                    "jobs": Dictionary(uniqueKeysWithValues: jobs.map { job in
                        (job.name, job.target.classicAttribute.map(Self.attributePath) ?? [])
                    }),
                ])
                command = (
                    binaries.nixInstantiate,
                    ["--eval", "--strict", "--json", "--read-write-mode", "-E", Self.classicExpression, "--argstr", "request", json]
                        + optionArguments + systemArguments + Self.searchPath(request.workspace)
                )
            }
            let ended = try await session.process(
                command.0, command.1, killGrace: settings.killGrace, maxResidentKilobytes: settings.evalMaxMemoryKilobytes,
                errorLine: raw)
            if case .memory(let kilobytes) = ended.stopCause {
                // Each job alone may fit: the one that does not then fails by itself.
                return .failure(.failed("the evaluation of \(jobs.count) jobs together used more than \(ByteCount.format(kilobytes * 1024))"))
            }
            if let outcome = Self.stopped(ended, timeout: settings.evalTimeout, maxSilent: settings.evalTimeout) {
                return .failure(.stopped(outcome))
            }
            guard ended.exitCode == 0,
                let found = (try? JSONSerialization.jsonObject(with: Data(ended.standardOutput))) as? [String: Any]
            else { return .failure(.failed("the evaluation of \(jobs.count) jobs together failed")) }
            var results: [String: [String]] = [:]
            for job in jobs {
                guard let each = found[job.name] as? [String] else { return .failure(.failed("nix did not answer for job \(job.name)")) }
                results[job.name] = each
            }
            return .success(results)
        } catch {
            return .failure(.stopped(Self.interrupted(session.stop, error)))
        }
    }

    private static func json(_ object: [String: Any]) throws -> String {
        String(decoding: try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]), as: UTF8.self)
    }

    /// Why an evaluation of several jobs together gave no answer.
    private enum SharedFailure: Error {
        /// Kiln stopped it (time, memory, a cancel): the same for every job.
        case stopped(JobOutcome)
        /// nix failed, for a reason of one or more of the jobs.
        case failed(String)
    }

    // MARK: Alone

    /// Evaluates one job with the command a user would run for it, its messages kept for its log.
    private func evaluateAlone(
        _ job: EvaluationRequest.Job, _ request: EvaluationRequest, _ session: inout NixSession, _ binaries: NixBinaries
    ) async -> EvaluationResult {
        let systemArguments = request.system.map { ["--option", "system", $0] } ?? []
        let flake = request.isPlainTree ? "path:\(request.workspace)" : "."
        let messages = Mutex(CappedText(cap: 64 << 10))
        let shared = session.log
        let capture = { @Sendable (line: ArraySlice<UInt8>) in messages.withLock { $0.append(line) } }
        let memory = settings.evalMaxMemoryKilobytes
        func finish(_ result: Result<[String], EvaluationFailure>) -> EvaluationResult {
            let text = messages.withLock { $0.text }
            switch result {
            case .success(let derivations):
                if !text.isEmpty { shared.write(Array(text.utf8)) }
                return .derivations(derivations)
            case .failure(let failure):
                return .failed(failure.outcome, log: text)
            }
        }
        do {
            switch job.target {
            case .installables(let installables):
                capture(ArraySlice("evaluating \(installables.joined(separator: " "))".utf8))
                let ended = try await session.process(
                    binaries.nix,
                    ["path-info", "--derivation"] + commonArguments + systemArguments + ["--"]
                        + installables.map { request.isPlainTree ? Self.anchor($0, in: request.workspace) : $0 },
                    killGrace: settings.killGrace, maxResidentKilobytes: memory, errorLine: capture)
                return finish(derivations(ended))
            case .classic(let file, let attribute):
                capture(ArraySlice(("evaluating \(file)" + (attribute.map { " -A \($0)" } ?? "")).utf8))
                let ended = try await session.process(
                    binaries.nixInstantiate,
                    ["./" + file] + (attribute.map { ["-A", $0] } ?? []) + optionArguments + systemArguments
                        + Self.searchPath(request.workspace),
                    killGrace: settings.killGrace, maxResidentKilobytes: memory, errorLine: capture)
                return finish(derivations(ended))
            case .flakeCheck:
                capture(ArraySlice("checking the flake (nix flake check --no-build)".utf8))
                let checked = try await session.process(
                    binaries.nix, ["flake", "check", "--no-build"] + commonArguments + systemArguments + [flake],
                    killGrace: settings.killGrace, maxResidentKilobytes: memory, errorLine: capture)
                if case .failure(let failure) = derivations(checked) { return finish(.failure(failure)) }
                guard let system = await system(request, binaries) else {
                    return finish(.failure(EvaluationFailure(outcome: .errored("nix did not say which system this machine builds for (`nix show-config --json` has no `system`); check that nix runs, or give the job a `system`"))))
                }
                let listed = try await session.process(
                    binaries.nix,
                    ["eval", "--json"] + commonArguments + systemArguments
                        + ["\(flake)#checks.\(system)", "--apply", "builtins.mapAttrs (name: check: check.drvPath)"],
                    killGrace: settings.killGrace, maxResidentKilobytes: memory, errorLine: capture)
                if listed.exitCode != 0, listed.stopCause == nil,
                    String(decoding: listed.errorTail, as: UTF8.self).contains("does not provide attribute")
                {
                    shared.note("the flake has no checks for \(system)")
                    return .derivations([])
                }
                if case .failure(let failure) = derivations(listed) { return finish(.failure(failure)) }
                let checks = (try? JSONSerialization.jsonObject(with: Data(listed.standardOutput))) as? [String: String] ?? [:]
                return finish(.success(checks.sorted { $0.key < $1.key }.map(\.value)))
            }
        } catch {
            return finish(.failure(EvaluationFailure(outcome: Self.interrupted(session.stop, error))))
        }
    }

    /// Store paths on an evaluation's standard output, or how the evaluation ended.
    private func derivations(_ ended: ProcessEnd) -> Result<[String], EvaluationFailure> {
        if let outcome = Self.stopped(ended, timeout: settings.evalTimeout, maxSilent: settings.evalTimeout) {
            return .failure(EvaluationFailure(outcome: outcome))
        }
        guard ended.exitCode == 0 else {
            let reason = "evaluation failed: " + NixMessages.lastError(ended.errorTail)
            return .failure(EvaluationFailure(outcome: .failed(exitCode: ended.exitCode ?? -1, reason: reason)))
        }
        return .success(Self.storePaths(ended.standardOutput).filter { $0.hasSuffix(".drv") })
    }
}

/// How one job's evaluation ended early.
private struct EvaluationFailure: Error {
    var outcome: JobOutcome
}

/// The jobs of one request as they are evaluated, and what each came to.
private struct Evaluation {
    /// What several jobs can be evaluated together by.
    enum SharedKind: Hashable {
        /// Installables of one flake (`.`, `./dir`).
        case flake(String)
        /// Attributes of one classic file.
        case classic(String)
    }

    enum Kind: Hashable {
        case shared(SharedKind)
        case alone
    }

    /// Jobs evaluated together (or, for `.alone`, each by itself).
    struct Group {
        var kind: Kind
        var jobs: [EvaluationRequest.Job]
    }

    let request: EvaluationRequest
    var results: [String: EvaluationResult] = [:]
    /// Set when Kiln stopped the evaluation: every job not yet evaluated ends the same way.
    var stopped: JobOutcome?

    init(request: EvaluationRequest) { self.request = request }

    /// The groups to evaluate, in the order of their first job. Jobs that reach outside the
    /// repository get their result here instead.
    mutating func groups() -> [Group] {
        var groups: [Group] = []
        for job in request.jobs {
            if let problem = job.target.confinementProblem ?? NixExecutor.symlinkProblem(job.target, in: request.workspace) {
                results[job.name] = .failed(.failed(exitCode: -1, reason: problem), log: problem + "\n")
                continue
            }
            let kind: Kind
            switch job.target {
            case .installables(let installables):
                let flakes = Set(installables.map { String($0.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false)[0]) })
                kind = flakes.count == 1 ? .shared(.flake(flakes.first!)) : .alone
            case .classic(let file, _): kind = .shared(.classic(file))
            case .flakeCheck: kind = .alone
            }
            if kind != .alone, let index = groups.firstIndex(where: { $0.kind == kind }) {
                groups[index].jobs.append(job)
            } else {
                groups.append(Group(kind: kind, jobs: [job]))
            }
        }
        return groups
    }

    /// Every job of `jobs` ends with `outcome`, and so does every job not yet evaluated.
    mutating func stop(_ jobs: [EvaluationRequest.Job], _ outcome: JobOutcome) {
        stopped = outcome
        for job in jobs { results[job.name] = .failed(outcome, log: "") }
    }
}

extension JobTarget {
    /// The installables of a flake target (none for other kinds).
    fileprivate var installables: [String] {
        if case .installables(let list) = self { return list }
        return []
    }

    /// The attribute path of a classic target, if it has one.
    fileprivate var classicAttribute: String? {
        if case .classic(_, let attribute) = self { return attribute }
        return nil
    }
}

extension NixExecutor {
    /// restrict-eval reads only the search path: the work tree and the store (a store path named
    /// in an expression, such as a builder added with `nix-store --add`), nothing else.
    static func searchPath(_ workspace: String) -> [String] { ["-I", workspace, "-I", "/nix/store"] }
}
