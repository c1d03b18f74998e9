import Foundation
import Synchronization

/// What the local nix builds for, read once from `nix show-config`.
struct HostInfo: Sendable, Hashable {
    /// `system`.
    var system: String
    /// `system`, `extra-platforms`, and the systems of `builders`.
    var systems: Set<String>

    init(showConfig json: [UInt8]) {
        let settings = (try? JSONSerialization.jsonObject(with: Data(json))) as? [String: [String: Any]] ?? [:]
        system = settings["system"]?["value"] as? String ?? "x86_64-linux"
        systems = [system]
        if let extra = settings["extra-platforms"]?["value"] as? [String] { systems.formUnion(extra) }
        if let builders = settings["builders"]?["value"] as? String {
            systems.formUnion(Self.builderSystems(builders, local: system))
        }
    }

    /// Systems named by a `builders` value: `uri sys1,sys2 key jobs …` entries separated by
    /// `;` or newlines; `@FILE` reads FILE. A builder without systems builds the local one.
    static func builderSystems(_ builders: String, local: String) -> Set<String> {
        var text = builders.trimmingCharacters(in: .whitespaces)
        if text.hasPrefix("@") {
            text = (try? String(contentsOfFile: String(text.dropFirst()), encoding: .utf8)) ?? ""
        }
        var systems: Set<String> = []
        for entry in text.split(whereSeparator: { $0 == ";" || $0 == "\n" }) {
            let fields = entry.split(separator: " ", omittingEmptySubsequences: true)
            guard let uri = fields.first, !uri.hasPrefix("#") else { continue }
            if fields.count > 1, fields[1] != "-" {
                systems.formUnion(fields[1].split(separator: ",").map(String.init))
            } else {
                systems.insert(local)
            }
        }
        return systems
    }
}

/// The host's description, kept after the first `nix show-config`.
final class HostInfoCache: Sendable {
    private let value = Mutex<HostInfo?>(nil)

    func load() -> HostInfo? { value.withLock { $0 } }
    func store(_ info: HostInfo) { value.withLock { $0 = info } }
}
