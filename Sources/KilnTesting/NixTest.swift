import Foundation

/// Whether tests that need nix run.
///
/// They run when nix is installed, and also when `KILN_REQUIRE_NIX` is set (as in CI),
/// so that a missing nix fails them there instead of skipping them.
public enum NixTest {
    /// True when nix-dependent tests should run.
    public static var enabled: Bool { isInstalled || isRequired }

    /// `KILN_REQUIRE_NIX` is set.
    public static var isRequired: Bool { ProcessInfo.processInfo.environment["KILN_REQUIRE_NIX"] != nil }

    /// `nix` is on PATH.
    public static var isInstalled: Bool {
        (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":").contains {
            FileManager.default.isExecutableFile(atPath: "\($0)/nix")
        }
    }

    /// nix options tests pass so that nothing tries the network (nixpkgs is not reachable here).
    public static let offlineOptions = ["substituters": ""]
}
