import Foundation
import KilnTesting
import Testing

/// The `kiln` binary itself, built beside the test bundle.
@Suite struct CommandLineTests {
    static let kiln = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("kiln").path

    struct Ran {
        var status: Int32
        var output: String
        var errors: String
    }

    func run(_ arguments: [String], input: String = "", in directory: String? = nil) throws -> Ran {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Self.kiln)
        process.arguments = arguments
        if let directory { process.currentDirectoryURL = URL(fileURLWithPath: directory) }
        let stdin = Pipe()
        let stdout = Pipe()
        let stderr = Pipe()
        process.standardInput = stdin
        process.standardOutput = stdout
        process.standardError = stderr
        try process.run()
        try stdin.fileHandleForWriting.write(contentsOf: Data(input.utf8))
        try stdin.fileHandleForWriting.close()
        let output = String(decoding: stdout.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        let errors = String(decoding: stderr.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        return Ran(status: process.terminationStatus, output: output, errors: errors)
    }

    @Test func checkPrintsEveryProblemAndExitsOne() throws {
        let ran = try run(["check", "-"], input: "jobs:\n  a:\n    bulid: .#a\n  b:\n    build: .#b\n    needs: c\n")
        #expect(ran.status == 1)
        #expect(ran.output == """
            <stdin>:3:5: unknown key 'bulid' in 'jobs.a' — did you mean 'build'?
            <stdin>:6:12: job 'b' needs 'c', which is not a job in this file

            """)
    }

    @Test func checkAcceptsAValidFile() throws {
        try withTemporaryDirectoryBlocking { directory in
            try "jobs:\n  hello:\n    build: .#hello\n".write(toFile: directory.appending(".kiln.yml"), atomically: true, encoding: .utf8)
            let ran = try run(["check"], in: directory.path)
            #expect(ran.status == 0)
            #expect(ran.output == ".kiln.yml: valid; 1 job: hello\n")
        }
    }

    @Test func checkSpeaksJSON() throws {
        let ran = try run(["check", "--format", "json", "-"], input: "jobs:\n  a:\n    build: .#a\n    timeout: 5\n")
        #expect(ran.status == 1)
        let object = try #require(try JSONSerialization.jsonObject(with: Data(ran.output.utf8)) as? [String: Any])
        #expect(object["valid"] as? Bool == false)
        let problem = try #require((object["diagnostics"] as? [[String: Any]])?.first)
        #expect(problem["line"] as? Int == 4 && problem["column"] as? Int == 14)
        #expect(problem["code"] as? String == "invalid-value")
    }

    @Test func aBadConfigurationStopsServeNamingTheKey() throws {
        try withTemporaryDirectoryBlocking { directory in
            try """
                forges:
                  github:
                    type: github
                    webhook-secret-files: [missing-secret]
                    status-api: none
                repositories:
                  - {forge: github, name: o/r, clone-url: "file:repo"}
                """.write(toFile: directory.appending("kiln.yaml"), atomically: true, encoding: .utf8)
            let ran = try run(["serve", "--config", directory.appending("kiln.yaml")])
            #expect(ran.status == 78)
            #expect(ran.errors.contains("kiln.yaml:4:28: forges.github.webhook-secret-files[0]: no such file \(directory.path)/missing-secret"))
        }
    }

    @Test(.enabled(if: NixTest.enabled, "nix is not installed"), .timeLimit(.minutes(2)))
    func runEvaluatesTheCheckoutOnceAndBuildsEachJob() throws {
        try withTemporaryDirectoryBlocking { directory in
            let marker = String(UInt64.random(in: 1_000_000_000...9_999_999_999))
            let repository = try TestGitRepository(at: directory.appending("work"))
            try TestFlake(packages: [:]).write(to: repository.path)
            try repository.write(
                "flake.nix",
                """
                {
                  outputs = { self }: let
                    bb = "${./bin}/busybox";
                    shared = builtins.trace "shared-\(marker)" "\(marker)";
                    mk = name: script: derivation {
                      name = name + "-" + shared;
                      system = "x86_64-linux";
                      builder = bb;
                      args = [ "sh" "-c" ("bb=" + bb + "; " + script) ];
                    };
                  in { packages.x86_64-linux = {
                    ok = mk "ok" "echo fine-\(marker); $bb mkdir $out";
                    bad = mk "bad" "echo doomed-\(marker); exit 2";
                  }; };
                }
                """)
            try repository.write(".kiln.yml", "jobs:\n  ok: { build: .#ok }\n  bad: { build: .#bad }\n")
            _ = try repository.commit("two jobs")
            let ran = try run(["run", "--repo", repository.path])
            #expect(ran.status == 1)
            #expect(ran.errors.contains("✔ ok:"), "\(ran.errors)")
            #expect(ran.errors.contains("✘ bad:"), "\(ran.errors)")
            // The build's end, as the coordinator's `build.finished` event says it.
            #expect(ran.errors.contains("kiln: failed: bad: failed after"), "\(ran.errors)")
            #expect(ran.output.contains("fine-\(marker)") && ran.output.contains("doomed-\(marker)"), "\(ran.output)")
            // One evaluation for both jobs.
            #expect((ran.output + ran.errors).components(separatedBy: "shared-\(marker)").count - 1 == 1, "\(ran.output)\(ran.errors)")
            #expect(ran.output.contains("evaluation | [kiln] evaluated 2 jobs"), "\(ran.output)")
        }
    }

    @Test func gcReportsWhatItRemoved() throws {
        try withTemporaryDirectoryBlocking { directory in
            try "s".write(toFile: directory.appending("secret"), atomically: true, encoding: .utf8)
            try """
                storage: {data-dir: data, retention: 30d}
                forges:
                  github: {type: github, webhook-secret-files: [secret], status-api: none}
                repositories:
                  - {forge: github, name: o/r, clone-url: "file:repo"}
                """.write(toFile: directory.appending("kiln.yaml"), atomically: true, encoding: .utf8)
            try FileManager.default.createDirectory(atPath: directory.appending("data"), withIntermediateDirectories: true)
            let ran = try run(["gc", "--config", directory.appending("kiln.yaml")])
            #expect(ran.status == 0)
            #expect(ran.output == "removed 0 builds and 0 job logs older than 720h\n")
        }
    }

    /// `kiln gc --store --optimise` on a store of its own (a chroot store: a collection there
    /// deletes nothing other tests are building).
    @Test(.enabled(if: NixTest.enabled, "nix is not installed"), .timeLimit(.minutes(2)))
    func gcCollectsAndOptimisesTheStore() throws {
        try withTemporaryDirectoryBlocking { directory in
            let chroot = directory.appending("chroot")
            try FileManager.default.createDirectory(atPath: directory.appending("nix/bin"), withIntermediateDirectories: true)
            try FileManager.default.copyItem(atPath: TestFlake.busybox, toPath: directory.appending("nix/bin/busybox"))
            try """
                { name }: derivation { inherit name; system = builtins.currentSystem; builder = "${./bin}/busybox";
                  args = [ "sh" "-c" "${./bin}/busybox mkdir $out; ${./bin}/busybox head -c 1048576 /dev/zero > $out/zeros" ]; }
                """.write(toFile: directory.appending("nix/d.nix"), atomically: true, encoding: .utf8)
            for name in ["gc-a", "gc-b"] {
                _ = try runCommand(
                    "/usr/bin/nix-build",
                    [directory.appending("nix/d.nix"), "--argstr", "name", name, "--no-out-link", "--store", chroot, "--option", "substituters", ""])
            }
            try "s".write(toFile: directory.appending("secret"), atomically: true, encoding: .utf8)
            try """
                storage: {data-dir: data}
                nix: {options: {store: "\(chroot)", substituters: ""}}
                forges:
                  github: {type: github, webhook-secret-files: [secret], status-api: none}
                repositories:
                  - {forge: github, name: o/r, clone-url: "file:repo"}
                """.write(toFile: directory.appending("kiln.yaml"), atomically: true, encoding: .utf8)
            try FileManager.default.createDirectory(atPath: directory.appending("data"), withIntermediateDirectories: true)
            let optimised = try run(["gc", "--optimise", "--config", directory.appending("kiln.yaml")])
            #expect(optimised.status == 0, "\(optimised.errors)")
            let saved = try #require(optimised.output.firstMatch(of: /hard-linking identical files saved ([0-9.]+) MiB/), "\(optimised.output)")
            #expect((Double(saved.1) ?? 0) >= 0.9)
            let collected = try run(["gc", "--store", "--config", directory.appending("kiln.yaml")])
            #expect(collected.status == 0, "\(collected.errors)")
            // Two outputs, their derivations and the busybox directory.
            let deleted = try #require(collected.output.firstMatch(of: /deleted (\d+) store paths, freeing/), "\(collected.output)")
            #expect((Int(deleted.1) ?? 0) >= 4)
            #expect(try FileManager.default.contentsOfDirectory(atPath: chroot + "/nix/store").filter { !$0.hasPrefix(".") }.isEmpty)
        }
    }

    @Test func tokensAreShownOnceListedAndRevoked() throws {
        try withTemporaryDirectoryBlocking { directory in
            try "s".write(toFile: directory.appending("secret"), atomically: true, encoding: .utf8)
            try """
                storage: {data-dir: data}
                forges:
                  github: {type: github, webhook-secret-files: [secret], status-api: none}
                repositories:
                  - {forge: github, name: o/r, clone-url: "file:repo"}
                """.write(toFile: directory.appending("kiln.yaml"), atomically: true, encoding: .utf8)
            let config = ["--config", directory.appending("kiln.yaml")]
            let created = try run(["token", "create", "--name", "ci-bot", "--scope", "control"] + config)
            #expect(created.status == 0 && created.errors.contains("it is not shown again"), "\(created.errors)")
            let token = created.output.trimmingCharacters(in: .whitespacesAndNewlines)
            #expect(token.range(of: "^kiln_[0-9]+_[0-9a-f]{64}$", options: .regularExpression) != nil, "\(token)")
            let again = try run(["token", "create", "--name", "ci-bot", "--scope", "read"] + config)
            #expect(again.status == 1 && again.errors.contains("a token named 'ci-bot' exists"))
            let badScope = try run(["token", "create", "--name", "x", "--scope", "root"] + config)
            #expect(badScope.status != 0 && badScope.errors.contains("'root' is not a scope"))
            let listed = try run(["token", "list"] + config)
            #expect(listed.output.hasPrefix("ci-bot\tcontrol\tcreated ") && listed.output.contains("\tactive"))
            #expect(!listed.output.contains(token.suffix(64)), "the list never shows a token")
            #expect(try run(["token", "revoke", "--name", "ci-bot"] + config).status == 0)
            #expect(try run(["token", "list"] + config).output.contains("\trevoked "))
            let unknown = try run(["token", "revoke", "--name", "nobody"] + config)
            #expect(unknown.status == 1 && unknown.errors.contains("no token is named 'nobody'"))
        }
    }
}

