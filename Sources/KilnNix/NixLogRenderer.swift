import Foundation
import KilnCore

/// Turns nix's `--log-format internal-json` stream into a readable log, a log per
/// derivation, and progress. Used by one task at a time (the process's stderr reader).
final class NixLogRenderer: @unchecked Sendable {
    private let sink: any LogSink
    private let derivationLogs: String?
    private let cap: Int
    private let maxFiles: Int
    private var named: Set<String> = []
    private var builds: [Int: Build] = [:]
    private var progress = JobProgress()
    private var files: [String: JobLogFile] = [:]
    /// The derivations this nix started building.
    private(set) var builtDerivations: Set<String> = []
    /// The derivations whose builder failed, as nix reported them.
    private(set) var failedDerivations: [String] = []
    /// Store paths nix substituted (fetched from a binary cache).
    private(set) var substituted: Set<String> = []
    /// The remote builder of each derivation built elsewhere, by derivation.
    private(set) var machines: [String: String] = [:]

    private struct Build {
        var derivation: String
        var label: String
    }

    /// Renders into `sink`; per-derivation logs go to `derivationLogs` (a directory) when given,
    /// for at most `maxDerivationLogs` derivations (the rest are in the job's log only).
    init(sink: any LogSink, derivationLogs: String?, capPerDerivation: Int, maxDerivationLogs: Int = 1000) {
        self.sink = sink
        self.derivationLogs = derivationLogs
        self.cap = capPerDerivation
        self.maxFiles = maxDerivationLogs
        if let derivationLogs {
            try? FileManager.default.createDirectory(atPath: derivationLogs, withIntermediateDirectories: true)
        }
    }

    /// Handles one line of nix's standard error (without its newline).
    func line(_ bytes: ArraySlice<UInt8>) {
        let prefix = Array("@nix ".utf8)
        guard bytes.starts(with: prefix),
            let object = try? JSONSerialization.jsonObject(with: Data(bytes.dropFirst(prefix.count))) as? [String: Any]
        else {
            sink.write(Array(bytes) + [0x0A])
            return
        }
        let id = (object["id"] as? NSNumber)?.intValue ?? 0
        switch object["action"] as? String {
        case "msg":
            guard let message = object["msg"] as? String, (object["level"] as? Int ?? 0) <= 3 else { return }
            if let failed = Self.failedDerivation(message), !failedDerivations.contains(failed) { failedDerivations.append(failed) }
            // Kiln keeps no GC roots on purpose (see the README); nix warns about it every time.
            if message.contains("you did not specify '--add-root'") { return }
            sink.write(Array((message + "\n").utf8))
        case "start" where (object["type"] as? Int) == 108:
            // A substitution: fields are the store path and the substituter.
            if let path = (object["fields"] as? [Any])?.first as? String { substituted.insert(path) }
        case "start" where (object["type"] as? Int) == 105:
            let fields = object["fields"] as? [Any] ?? []
            guard let derivation = fields.first as? String else { return }
            let label = Self.label(derivation)
            builds[id] = Build(derivation: derivation, label: label)
            builtDerivations.insert(derivation)
            progress.building = label
            // The machine, when a remote builder (`nix.builders`) builds it; its URI without the query.
            var line = "building '\(derivation)'"
            if fields.count > 1, let uri = fields[1] as? String, !uri.isEmpty {
                let machine = String(uri.prefix { $0 != "?" })
                machines[derivation] = machine
                line += " on \(machine)"
            }
            sink.write(Array((line + "\n").utf8))
            sink.progress(progress)
            openLog(derivation)?.write(Array((line + "\n").utf8))
        case "result":
            let fields = object["fields"] as? [Any] ?? []
            switch object["type"] as? Int {
            case 101:
                guard let build = builds[id], let text = fields.first as? String else { return }
                let line = Array("\(build.label)> \(text)\n".utf8)
                sink.write(line)
                openLog(build.derivation)?.write(Array((text + "\n").utf8))
            case 105 where fields.count >= 4:
                let numbers = fields.map { ($0 as? NSNumber)?.intValue ?? 0 }
                // The "builds" activity reports done, expected, running, failed.
                guard numbers[1] > 0 || numbers[0] > 0 else { return }
                progress.done = numbers[0]
                progress.expected = numbers[1]
                progress.failed = numbers[3]
                sink.progress(progress)
            default:
                return
            }
        case "stop":
            guard let build = builds.removeValue(forKey: id) else { return }
            files.removeValue(forKey: build.derivation)?.close()
            if progress.building == build.label { progress.building = nil }
        default:
            return
        }
    }

    /// Closes the per-derivation logs.
    func finish() {
        for file in files.values { file.close() }
        files = [:]
    }

    private func openLog(_ derivation: String) -> JobLogFile? {
        guard let derivationLogs else { return nil }
        if let file = files[derivation] { return file }
        let name = (derivation as NSString).lastPathComponent
        if !named.contains(name) {
            guard named.count < maxFiles else {
                if named.count == maxFiles {
                    named.insert("")  // noted once
                    sink.write(Array("more than \(maxFiles) derivations: the others are logged in this log only\n".utf8))
                }
                return nil
            }
            named.insert(name)
        }
        guard let file = try? JobLogFile(path: "\(derivationLogs)/\(name).log", cap: cap) else { return nil }
        files[derivation] = file
        return file
    }

    /// The derivation of nix's "builder for '/nix/store/….drv' failed" message, if it is one.
    static func failedDerivation(_ message: String) -> String? {
        let plain = ANSI.strip(message)
        guard let start = plain.range(of: "builder for '")?.upperBound,
            let end = plain[start...].range(of: ".drv'")?.lowerBound,
            plain[end...].contains("failed")
        else { return nil }
        return String(plain[start..<end]) + ".drv"
    }

    /// `/nix/store/abc…-hello-1.0.drv` → `hello-1.0`.
    static func label(_ derivation: String) -> String {
        var name = (derivation as NSString).lastPathComponent
        if let dash = name.firstIndex(of: "-") { name = String(name[name.index(after: dash)...]) }
        if name.hasSuffix(".drv") { name.removeLast(4) }
        return name
    }
}
