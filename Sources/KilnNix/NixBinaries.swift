import Foundation
import KilnCore
import Subprocess

#if canImport(System)
    import System
#else
    import SystemPackage
#endif

/// The nix commands Kiln runs, from one installation.
struct NixBinaries: Sendable {
    /// `nix`.
    var nix: String
    /// `nix-store`, for `--realise`.
    var nixStore: String
    /// `nix-instantiate`, for classic nix files.
    var nixInstantiate: String

    /// The binaries beside `binary` (a name on PATH or a path), or a message that says how to fix it.
    static func resolve(_ binary: String) -> Result<NixBinaries, NixQueryError> {
        let nix: String
        if binary.contains("/") {
            nix = binary
        } else if let found = search(binary) {
            nix = found
        } else {
            return .failure(NixQueryError(message:
                "nix.binary '\(binary)' was not found on PATH; install nix (Debian: apt-get install nix-bin) or set nix.binary to its full path"))
        }
        guard FileManager.default.isExecutableFile(atPath: nix) else {
            return .failure(NixQueryError(message: "nix.binary \(nix) is not an executable file"))
        }
        let resolved = (try? FileManager.default.destinationOfSymbolicLink(atPath: nix)).map { target in
            target.hasPrefix("/") ? target : (nix as NSString).deletingLastPathComponent + "/" + target
        } ?? nix
        for directory in [(nix as NSString).deletingLastPathComponent, (resolved as NSString).deletingLastPathComponent] {
            let store = directory + "/nix-store"
            let instantiate = directory + "/nix-instantiate"
            if FileManager.default.isExecutableFile(atPath: store), FileManager.default.isExecutableFile(atPath: instantiate) {
                return .success(NixBinaries(nix: nix, nixStore: store, nixInstantiate: instantiate))
            }
        }
        return .failure(NixQueryError(message: "nix-store and nix-instantiate were not found beside \(nix); Kiln needs them from the same nix installation"))
    }

    private static func search(_ name: String) -> String? {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/local/bin:/usr/bin:/bin"
        for directory in path.split(separator: ":") {
            let candidate = "\(directory)/\(name)"
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        return nil
    }

    /// `nix-daemon`, beside `nix-store`, when it is there.
    var nixDaemon: String? {
        let daemon = (nixStore as NSString).deletingLastPathComponent + "/nix-daemon"
        return FileManager.default.isExecutableFile(atPath: daemon) ? daemon : nil
    }

    /// The directories the binaries are in, and those their links point into.
    var directories: [String] {
        var found: [String] = []
        for binary in [nix, nixStore, nixInstantiate] {
            for path in [binary, URL(fileURLWithPath: binary).resolvingSymlinksInPath().path] {
                let directory = (path as NSString).deletingLastPathComponent
                if !found.contains(directory) { found.append(directory) }
            }
        }
        return found
    }

    /// Runs a short nix query in `environment` (by default one with no home: a query that needs
    /// one is given a job's) and returns its standard output.
    static func capture(
        _ executable: String, _ arguments: [String], environment: [String: String] = ScrubbedEnvironment.queryVariables,
        workingDirectory: String? = nil, outputLimit: Int = 16 << 20
    ) async throws -> String {
        try await captureBoth(
            executable, arguments, environment: environment, workingDirectory: workingDirectory, outputLimit: outputLimit
        ).output
    }

    /// `capture`, with standard error too (some commands report there).
    static func captureBoth(
        _ executable: String, _ arguments: [String], environment: [String: String] = ScrubbedEnvironment.queryVariables,
        workingDirectory: String? = nil, outputLimit: Int = 16 << 20
    ) async throws -> (output: String, errors: String) {
        let result = try await Subprocess.run(
            .path(FilePath(executable)), arguments: Arguments(arguments),
            environment: ScrubbedEnvironment.subprocess(environment),
            workingDirectory: workingDirectory.map { FilePath($0) },
            output: .string(limit: outputLimit), error: .string(limit: 64 << 10))
        guard case .exited(0) = result.terminationStatus else {
            let detail = result.standardError.trimmingCharacters(in: .whitespacesAndNewlines)
            throw NixQueryError(
                message: "`\(([executable] + arguments.prefix(2)).joined(separator: " "))` failed (\(result.terminationStatus)): \(detail.suffix(400))")
        }
        return (result.standardOutput, result.standardError)
    }
}

/// A nix query that did not answer.
struct NixQueryError: Error, CustomStringConvertible {
    var message: String
    var description: String { message }
}

/// Reading nix's settings and messages.
enum SandboxCheck {
    /// Why `nix show-config --json` output does not confirm the sandbox, or nil when it does.
    static func problem(inShowConfig json: [UInt8]) -> String? {
        guard let settings = try? JSONSerialization.jsonObject(with: Data(json)) as? [String: Any] else {
            return "could not read `nix show-config --json`; Kiln builds only when it can confirm the sandbox"
        }
        func value(_ name: String) -> String {
            let entry = settings[name] as? [String: Any]
            switch entry?["value"] {
            case let flag as Bool: return flag ? "true" : "false"
            case let text as String: return text
            case nil: return "unset"
            case let other?: return "\(other)"
            }
        }
        let sandbox = value("sandbox")
        let fallback = value("sandbox-fallback")
        guard sandbox == "true", fallback == "false" else {
            return
                "nix reports sandbox = \(sandbox), sandbox-fallback = \(fallback); Kiln builds only with sandbox = true and sandbox-fallback = false (a nix daemon must trust Kiln's user for Kiln's settings to apply)"
        }
        return nil
    }
}

/// nix's error output, condensed for a status description.
enum NixMessages {
    /// The last `error:` line of nix's standard error, without colours, or its last line.
    /// Store path prefixes are dropped (`builder for 'hello.drv' failed…`): descriptions are short.
    static func lastError(_ tail: [UInt8]) -> String {
        // With --log-format internal-json, nix's messages are `@nix {"action":"msg","msg":…}` lines.
        let messages = String(decoding: tail, as: UTF8.self).split(whereSeparator: \.isNewline).map { line -> Substring in
            guard line.hasPrefix("@nix {"),
                let object = try? JSONSerialization.jsonObject(with: Data(line.dropFirst(5).utf8)) as? [String: Any],
                object["action"] as? String == "msg", let message = object["msg"] as? String
            else { return line }
            return Substring(message)
        }
        let text = ANSI.strip(messages.joined(separator: "\n"))
            .replacingOccurrences(of: "/nix/store/[0-9a-z]{32}-", with: "", options: .regularExpression)
        let lines = text.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }
        // A remote builder nix could not reach is named first: the last error alone (no machine
        // offers what the derivation needs) would not say why.
        let unreachable = lines.compactMap(unreachableBuilder).reduce(into: [String]()) { if !$0.contains($1) { $0.append($1) } }
        let prefix = unreachable.isEmpty ? "" : unreachable.joined(separator: "; ") + "; "
        if let error = lines.last(where: { $0.hasPrefix("error:") }) {
            return prefix + String(error.dropFirst("error:".count)).trimmingCharacters(in: .whitespaces)
        }
        return prefix + (lines.last(where: { !$0.isEmpty }) ?? "no error message")
    }

    /// `cannot build on 'URI': REASON` as "remote builder URI (without its query) could not be
    /// reached: REASON"; nil for any other line.
    static func unreachableBuilder(_ line: String) -> String? {
        let start = "cannot build on '"
        guard line.hasPrefix(start), let end = line.range(of: "': ", range: line.index(line.startIndex, offsetBy: start.count)..<line.endIndex)
        else { return nil }
        let uri = line[line.index(line.startIndex, offsetBy: start.count)..<end.lowerBound].prefix { $0 != "?" }
        let reason = line[end.upperBound...].replacingOccurrences(of: "error: ", with: "")
        return "remote builder \(uri) could not be reached: \(reason)"
    }
}
