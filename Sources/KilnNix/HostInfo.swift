import Foundation
import Synchronization

/// What the local nix builds for, read once from `nix show-config`.
struct HostInfo: Sendable, Hashable {
    /// `system`.
    var system: String
    /// `system`, `extra-platforms`, and the systems of `builders`.
    var systems: Set<String>
    /// Whether `builders` names any remote builder. Without one, nix's build hook only says no,
    /// and Kiln turns it off: starting it cost each job's nix 30 ms.
    var hasBuilders: Bool
    /// The build settings a nix-daemon client states with every build (`max-jobs`, `cores`, …),
    /// as nix has them: Kiln states them unchanged.
    var buildSettings = DaemonBuildSettings()

    init(showConfig json: [UInt8]) {
        let settings = (try? JSONSerialization.jsonObject(with: Data(json))) as? [String: [String: Any]] ?? [:]
        system = settings["system"]?["value"] as? String ?? "x86_64-linux"
        systems = [system]
        if let extra = settings["extra-platforms"]?["value"] as? [String] { systems.formUnion(extra) }
        let builders = Self.builders(settings["builders"]?["value"] as? String ?? "")
        hasBuilders = !builders.isEmpty
        systems.formUnion(Self.systems(of: builders, local: system))
        func flag(_ name: String) -> Bool? { settings[name]?["value"] as? Bool }
        func number(_ name: String) -> UInt64? { (settings[name]?["value"] as? NSNumber).map { UInt64(max(0, $0.int64Value)) } }
        let defaults = DaemonBuildSettings()
        buildSettings = DaemonBuildSettings(
            keepFailed: flag("keep-failed") ?? defaults.keepFailed, keepGoing: flag("keep-going") ?? defaults.keepGoing,
            fallback: flag("fallback") ?? defaults.fallback, maxJobs: number("max-jobs") ?? defaults.maxJobs,
            cores: number("cores") ?? defaults.cores, substitute: flag("substitute") ?? defaults.substitute)
    }

    /// Systems named by a `builders` value; a builder without systems builds the `local` one.
    static func builderSystems(_ builders: String, local: String) -> Set<String> {
        systems(of: Self.builders(builders), local: local)
    }

    private static func systems(of builders: [[Substring]], local: String) -> Set<String> {
        Set(builders.flatMap { fields in fields.count > 1 && fields[1] != "-" ? fields[1].split(separator: ",").map(String.init) : [local] })
    }

    /// The entries of a `builders` value, each split into its fields (`uri sys1,sys2 key jobs …`):
    /// entries are separated by `;` or newlines, `#` starts a comment, and `@FILE` reads FILE.
    static func builders(_ value: String) -> [[Substring]] {
        var text = value.trimmingCharacters(in: .whitespaces)
        if text.hasPrefix("@") {
            text = (try? String(contentsOfFile: String(text.dropFirst()), encoding: .utf8)) ?? ""
        }
        return text.split(whereSeparator: { $0 == ";" || $0 == "\n" }).compactMap { entry in
            let fields = entry.split(separator: " ", omittingEmptySubsequences: true)
            guard let uri = fields.first, !uri.hasPrefix("#") else { return nil }
            return fields
        }
    }
}

/// The host's description, kept after the first `nix show-config`.
final class HostInfoCache: Sendable {
    private let value = Mutex<HostInfo?>(nil)

    func load() -> HostInfo? { value.withLock { $0 } }
    func store(_ info: HostInfo) { value.withLock { $0 = info } }
}
