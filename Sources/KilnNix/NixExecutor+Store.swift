import Foundation
import KilnCore
import KilnPipeline

/// The store's housekeeping for the cache service, with nix's own commands.
extension NixExecutor: StoreMaintenance {
    public func addRoot(_ path: String, at link: String) async throws {
        let binaries = try NixBinaries.resolve(settings.binary).get()
        _ = try await NixBinaries.capture(binaries.nixStore, ["--add-root", link, "--realise", path] + optionArguments)
    }

    public func collectGarbage(maxFreed: Int64?) async throws -> CollectedGarbage {
        let binaries = try NixBinaries.resolve(settings.binary).get()
        let output = try await NixBinaries.capture(
            binaries.nixStore, ["--gc"] + (maxFreed.map { ["--max-freed", String(max(1, $0))] } ?? []) + optionArguments)
        // "3 store paths deleted, 1.25 MiB freed"
        guard let match = output.firstMatch(of: /(\d+) store paths deleted, ([0-9.]+) MiB freed/) else {
            throw NixQueryError(message: "nix-store --gc said nothing of what it freed: \(output)")
        }
        return CollectedGarbage(paths: Int(match.1) ?? 0, bytes: Self.mebibytes(match.2))
    }

    public func optimise() async throws -> Int64 {
        let binaries = try NixBinaries.resolve(settings.binary).get()
        // nix says what it saved on standard error, which capture keeps only on failure.
        let result = try await NixBinaries.captureBoth(binaries.nixStore, ["--optimise"] + optionArguments).errors
        guard let match = result.firstMatch(of: /([0-9.]+) MiB freed by hard-linking (\d+) files/) else {
            throw NixQueryError(message: "nix-store --optimise said nothing of what it saved: \(result)")
        }
        return Self.mebibytes(match.1)
    }

    public func realise(_ installables: [String], roots: String, log: any LogSink, stop: StopSignal) async -> String? {
        guard !installables.isEmpty else { return nil }
        var session: NixSession
        let binaries: NixBinaries
        // The operator's own installables (nix.warm), not a repository's: evaluated unconfined,
        // built in the sandbox like every build.
        switch openSession(log: log, stop: stop, deadline: .now + .seconds(6 * 3600), workingDirectory: nil) {
        case .failure(let problem): return problem.message
        case .success(let opened): (session, binaries) = opened
        }
        defer { session.close() }
        do {
            try FileManager.default.createDirectory(atPath: roots, withIntermediateDirectories: true)
        } catch {
            return "could not make \(roots): \(error)"
        }
        let renderer = NixLogRenderer(sink: log, derivationLogs: nil, capPerDerivation: settings.derivationLogCap)
        do {
            defer { renderer.finish() }
            let built = try await session.process(
                binaries.nix,
                ["build", "--out-link", roots + "/result", "--log-format", "internal-json"] + commonArguments + ["--"] + installables,
                killGrace: settings.killGrace, confined: false, errorLine: { renderer.line($0) })
            guard built.exitCode == 0, built.stopCause == nil else { return NixMessages.lastError(built.errorTail) }
            return nil
        } catch {
            return "could not run nix: \(error)"
        }
    }

    public func storeSize() async throws -> (paths: Int, bytes: Int64) {
        let binaries = try NixBinaries.resolve(settings.binary).get()
        let listed = try await NixBinaries.capture(binaries.nix, ["path-info", "--all", "-s"] + commonArguments, outputLimit: 256 << 20)
        var paths = 0
        var bytes: Int64 = 0
        for line in listed.split(whereSeparator: \.isNewline) {
            let fields = line.split(whereSeparator: \.isWhitespace)
            guard fields.count == 2, let size = Int64(fields[1]) else { continue }
            paths += 1
            bytes += size
        }
        return (paths, bytes)
    }

    public func freeBytes() -> Int64? {
        // A chroot store (`store = /some/dir`, as the tests use) lives on its own directory's file system.
        let root = settings.options["store"].flatMap { $0.hasPrefix("/") ? $0 : nil } ?? "/nix/store"
        var status = statvfs()
        guard statvfs(root, &status) == 0 else { return nil }
        return Int64(status.f_bavail) * Int64(status.f_frsize)
    }

    /// `1.25` (MiB) in bytes.
    static func mebibytes(_ text: Substring) -> Int64 { Int64(((Double(text) ?? 0) * 1_048_576).rounded()) }
}
