import Foundation
import KilnPipeline

/// A flake whose derivations are busybox shell scripts, so that it builds without nixpkgs.
///
/// `bin/busybox` is a copy of the machine's static busybox; the flake refers to it as
/// `./bin`, which nix copies into the store, so builders run it inside the sandbox.
public struct TestFlake: Sendable {
    /// Derivation name → shell script (run by busybox sh; `$out` must be created to succeed).
    public var packages: [String: String]
    /// Attributes that throw at evaluation, with the message.
    public var evaluationErrors: [String: String] = [:]

    /// Creates a flake description.
    public init(packages: [String: String], evaluationErrors: [String: String] = [:]) {
        self.packages = packages
        self.evaluationErrors = evaluationErrors
    }

    /// The machine's static busybox, which test derivations run as their builder.
    public static let busybox = "/bin/busybox"

    /// A script that prints `text` and creates `$out`.
    public static func succeeding(_ text: String) -> String { "echo \(text); $bb mkdir $out; echo \(text) > $out/result" }

    /// Writes `flake.nix` and `bin/busybox` into `directory`.
    public func write(to directory: String) throws {
        let bin = directory + "/bin"
        try FileManager.default.createDirectory(atPath: bin, withIntermediateDirectories: true)
        if !FileManager.default.fileExists(atPath: bin + "/busybox") {
            try FileManager.default.copyItem(atPath: Self.busybox, toPath: bin + "/busybox")
        }
        var attributes = packages.sorted { $0.key < $1.key }.map { name, script in
            "      \(name) = mk \"\(name)\" \(NixString.literal(script));"
        }
        attributes += evaluationErrors.sorted { $0.key < $1.key }.map { name, message in
            "      \(name) = throw \(NixString.literal(message));"
        }
        let flake = """
            {
              outputs = { self }: let
                bb = "${./bin}/busybox";
                mk = name: script: derivation {
                  inherit name;
                  system = "x86_64-linux";
                  builder = bb;
                  args = [ "sh" "-c" ("bb=" + bb + "; " + script) ];
                };
              in {
                packages.x86_64-linux = {
            \(attributes.joined(separator: "\n"))
                };
              };
            }

            """
        try flake.write(toFile: directory + "/flake.nix", atomically: true, encoding: .utf8)
    }
}
