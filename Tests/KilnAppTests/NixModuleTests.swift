import Foundation
import KilnTesting
import Testing

@testable import KilnApp

/// The flake and the NixOS module, checked as far as this machine can without nixpkgs: every nix
/// file parses, and the module's typed settings are exactly the configuration's keys.
@Suite struct NixModuleTests {
    static let root = FileManager.default.currentDirectoryPath

    @Test func everyNixFileParses() async throws {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/nix-instantiate") else {
            #expect(ProcessInfo.processInfo.environment["KILN_REQUIRE_NIX"] == nil, "nix-instantiate is missing")
            return
        }
        for file in ["flake.nix", "nix/module.nix", "nix/package.nix"] {
            let parsed = try await Processes.run("/usr/bin/nix-instantiate", ["--parse", "\(Self.root)/\(file)"])
            #expect(parsed.status == 0, "\(file): \(parsed.output)")
        }
    }

    @Test func theModulesSettingsAreTheConfigurationsKeys() throws {
        let module = try String(contentsOfFile: "\(Self.root)/nix/module.nix", encoding: .utf8)
        func keys(_ section: String) -> Set<String> {
            guard let start = module.range(of: "# keys of \(section):") else { return [] }
            let rest = module[start.upperBound...]
            let end = rest.range(of: "# keys of ")?.lowerBound ?? rest.range(of: "# end of keys")?.lowerBound ?? rest.endIndex
            return Set(rest[..<end].split(separator: "\n").compactMap { line in
                line.firstMatch(of: /^\s+([a-z][a-z-]*) = (?:mkOption|option)\b/).map { String($0.1) }
            })
        }
        #expect(keys("server") == Set(ConfigReader.serverKeys))
        #expect(keys("storage") == Set(ConfigReader.storageKeys))
        #expect(keys("nix") == Set(ConfigReader.nixKeys))
    }
}
