import Foundation
import KilnTesting
import Testing

@testable import KilnNix

/// nix's store database read directly must answer exactly what nix's own commands answer.
@Suite(.enabled(if: NixTest.enabled, "nix is not installed (set KILN_REQUIRE_NIX to make this a failure)"))
struct NixStoreDatabaseTests {
    static let nix = ["--extra-experimental-features", "nix-command flakes", "--option", "substituters", ""]

    @Test(.timeLimit(.minutes(2))) func answersAsNixDoes() async throws {
        let database = try #require(NixStoreDatabase.local(options: [:]), "the local store's database cannot be read")
        #expect(NixStoreDatabase.local(options: ["store": "/elsewhere"]) == nil)
        try await withTemporaryDirectory("kiln-store-db") { directory in
            let marker = UUID().uuidString.lowercased()
            try TestFlake(packages: ["built": TestFlake.succeeding("built-\(marker)"), "unbuilt": TestFlake.succeeding("unbuilt-\(marker)")])
                .write(to: directory.path)
            func derivation(_ name: String) throws -> String {
                try runCommand("/usr/bin/nix", ["path-info", "--derivation"] + Self.nix + ["path:\(directory.path)#\(name)"])
                    .trimmingCharacters(in: .whitespacesAndNewlines)
            }
            let built = try derivation("built")
            let unbuilt = try derivation("unbuilt")
            _ = try runCommand("/usr/bin/nix-store", ["--realise", "--option", "substituters", "", built])

            // Outputs: as `nix show-derivation` has them.
            let outputs = try #require(database.outputs(of: [built, unbuilt]))
            let shown = try #require(
                try JSONSerialization.jsonObject(
                    with: Data(try runCommand("/usr/bin/nix", ["show-derivation"] + Self.nix + [built, unbuilt]).utf8)) as? [String: [String: Any]])
            for drv in [built, unbuilt] {
                let named = try #require(shown[drv]?["outputs"] as? [String: [String: Any]])
                #expect(outputs[drv] == named.values.compactMap { $0["path"] as? String }.sorted())
            }
            #expect(database.outputs(of: [built, "/nix/store/00000000000000000000000000000000-none.drv"]) == nil)

            // Validity: the built output is valid, the unbuilt one is not.
            let builtOutput = try #require(outputs[built]?.first)
            let unbuiltOutput = try #require(outputs[unbuilt]?.first)
            #expect(database.valid([builtOutput, unbuiltOutput]) == [builtOutput])

            // NAR hash and size: as `nix path-info --json` prints them.
            let info = try #require(database.narInfo([builtOutput])?[builtOutput])
            let described = try #require(
                (try JSONSerialization.jsonObject(
                    with: Data(try runCommand("/usr/bin/nix", ["path-info", "--json"] + Self.nix + [builtOutput]).utf8)) as? [[String: Any]])?.first)
            #expect(info.narHash == described["narHash"] as? String)
            #expect(info.narSize == (described["narSize"] as? NSNumber)?.int64Value)
            #expect(database.narInfo([builtOutput, unbuiltOutput]) == nil)
        }
    }

    @Test func hashesAreConvertedOnlyFromSHA256Hex() {
        #expect(
            NixStoreDatabase.sri("sha256:02c16728ba6da44bfe61478734e9b09585fcb97c8c05d6c8d5623240f573244f")
                == "sha256-AsFnKLptpEv+YUeHNOmwlYX8uXyMBdbI1WIyQPVzJE8=")
        #expect(NixStoreDatabase.sri("sha512:02c1") == nil)
        #expect(NixStoreDatabase.sri("sha256:02c1") == nil)
        #expect(NixStoreDatabase.sri("sha256:" + String(repeating: "z", count: 64)) == nil)
    }

    @Test func aBuildHookIsNeededOnlyForRemoteBuilders() throws {
        func host(_ builders: String) -> HostInfo {
            HostInfo(showConfig: Array(#"{"system": {"value": "x86_64-linux"}, "builders": {"value": "\#(builders)"}}"#.utf8))
        }
        #expect(!host("").hasBuilders)
        #expect(!host("@/nonexistent/machines").hasBuilders)
        #expect(!host("# a comment only").hasBuilders)
        #expect(host("ssh-ng://b x86_64-linux - 2").hasBuilders)
        let directory = try TemporaryDirectory("kiln-hook")
        defer { directory.remove() }
        let hook = try NixExecutor.decliningBuildHook(in: directory.path)
        // nix reads "# decline-permanently" from the hook's standard error.
        let answer = try runCommand("/bin/sh", ["-c", "\(hook) 3 2>&1 </dev/null"])
        #expect(answer == "# decline-permanently\n")
    }
}
