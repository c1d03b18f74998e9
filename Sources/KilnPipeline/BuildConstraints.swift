import Foundation

/// What a job's build needs of the sandbox beyond nix's defaults: tvix-build's
/// `BuildRequest.BuildConstraints` as job keys (`system` and `min-memory` are keys of their own).
public struct BuildConstraints: Sendable, Hashable, Codable {
    /// `network: true`: the job's derivations reach the network, which nix allows only to
    /// fixed-output derivations; any other is refused (tvix: `network_access`).
    public var network: Bool
    /// `read-only-paths`: host paths made visible in the sandbox, each in the server's
    /// `nix.allowed-read-only-paths` (tvix: `available_ro_paths`).
    public var readOnlyPaths: [String]
    /// `provide-bin-sh`: a `/bin/sh` in the sandbox, the server's `nix.sandbox-shell`
    /// (tvix: `provide_bin_sh`).
    public var provideBinSh: Bool

    /// Creates constraints; the defaults are nix's own sandbox.
    public init(network: Bool = false, readOnlyPaths: [String] = [], provideBinSh: Bool = false) {
        self.network = network
        self.readOnlyPaths = readOnlyPaths
        self.provideBinSh = provideBinSh
    }

    /// Nothing beyond nix's defaults.
    public var isEmpty: Bool { !network && readOnlyPaths.isEmpty && !provideBinSh }

    /// At most this many read-only paths per job.
    public static let maxReadOnlyPaths = 16

    /// Why `path` cannot be a read-only path, or nil when it can.
    public static func readOnlyPathProblem(_ path: String) -> String? {
        guard path.hasPrefix("/"), path.count > 1 else { return "read-only path '\(path)' must be an absolute path such as /etc/ssl/certs" }
        if path.split(separator: "/").contains(where: { $0 == ".." || $0 == "." }) || path.contains("//") {
            return "read-only path '\(path)' must be a plain absolute path, without '.', '..' or '//'"
        }
        if path.contains(where: { $0.isWhitespace || $0 == "=" || $0 == "?" || $0.asciiValue.map { $0 < 0x20 } ?? false }) {
            return "read-only path '\(path)' must not contain spaces, '=' or '?'"
        }
        if path.hasPrefix("/nix/store") { return "read-only path '\(path)' is in the store, which builds see already" }
        return nil
    }
}
