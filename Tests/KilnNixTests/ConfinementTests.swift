import Foundation
import KilnCore
import KilnPipeline
import KilnTesting
import Testing

@testable import KilnNix

/// A repository's evaluation reads only its own work tree and the store, in a scrubbed
/// environment: nothing of the host's files, Kiln's secrets or Kiln's environment.
@Suite(.enabled(if: NixTest.enabled, "nix is not installed (set KILN_REQUIRE_NIX to make this a failure)"))
struct ConfinementTests {
    let executor = NixExecutor(settings: NixSettings(options: NixTest.offlineOptions, killGrace: .seconds(2)))

    static func marker() -> String { String(UInt64.random(in: 1_000_000_000...9_999_999_999)) }

    func job(_ target: JobTarget, in directory: String) -> TestJob {
        TestJob(
            name: "confined", target: target, workspace: directory, isPlainTree: true, timeout: .seconds(120),
            maxSilent: .seconds(60))
    }

    /// A secret beside the work tree (as Kiln's own files are), with a unique content.
    func secret(in directory: TemporaryDirectory) throws -> (path: String, value: String) {
        let value = "kiln-secret-\(Self.marker())"
        let path = directory.appending("secret/key")
        try FileManager.default.createDirectory(atPath: directory.appending("secret"), withIntermediateDirectories: true)
        try value.write(toFile: path, atomically: true, encoding: .utf8)
        return (path, value)
    }

    @Test(.timeLimit(.minutes(2))) func classicFileCannotReadTheHost() async throws {
        try await withTemporaryDirectory("kiln-confined") { directory in
            let secret = try secret(in: directory)
            let tree = directory.appending("tree")
            try TestFlake(packages: [:]).write(to: tree)
            for (name, expression) in [
                ("read", "builtins.readFile \(secret.path)"), ("import", "import \(secret.path)"),
                ("path", "builtins.readFile (builtins.path { path = \(secret.path); })"),
            ] {
                try """
                    let bb = "${./bin}/busybox"; in derivation {
                      name = "leak"; system = "x86_64-linux"; builder = bb;
                      args = [ "sh" "-c" ("echo " + (\(expression)) + "; ${bb} mkdir $out") ];
                    }
                    """.write(toFile: tree + "/\(name).nix", atomically: true, encoding: .utf8)
                let log = MemoryLog()
                let report = await executor.run(job(.classic(file: "\(name).nix", attribute: nil), in: tree), log: log, stop: StopSignal())
                guard case .failed(_, let reason) = report.outcome else {
                    Issue.record("\(name): expected an evaluation failure, got \(report.outcome)")
                    continue
                }
                #expect(reason.contains("forbidden in restricted mode"), "\(name): \(reason)")
                #expect(!log.text.contains(secret.value), "\(name)")
            }
        }
    }

    @Test(.timeLimit(.minutes(2))) func aFlakeInputNamingAHostPathIsNotThere() async throws {
        try await withTemporaryDirectory("kiln-confined") { directory in
            let secret = try secret(in: directory)
            let tree = directory.appending("tree")
            try TestFlake(packages: [:]).write(to: tree)
            // nix fetches a path: input even in pure mode; only the jail keeps the host out of reach.
            try """
                {
                  inputs.s = { url = "path:\((secret.path as NSString).deletingLastPathComponent)"; flake = false; };
                  outputs = { self, s }: let bb = "${./bin}/busybox"; in {
                    leak = derivation {
                      name = "leak"; system = "x86_64-linux"; builder = bb;
                      args = [ "sh" "-c" ("echo " + builtins.readFile "${s}/key" + "; ${bb} mkdir $out") ];
                    };
                  };
                }
                """.write(toFile: tree + "/flake.nix", atomically: true, encoding: .utf8)
            let log = MemoryLog()
            let report = await executor.run(job(.installables([".#leak"]), in: tree), log: log, stop: StopSignal())
            guard case .failed(_, let reason) = report.outcome else {
                Issue.record("expected an evaluation failure, got \(report.outcome)")
                return
            }
            #expect(reason.contains("No such file or directory"), "\(reason)")
            #expect(!log.text.contains(secret.value))
        }
    }

    @Test(.timeLimit(.minutes(2))) func nixGetsAScrubbedEnvironmentInTheJail() async throws {
        try await withTemporaryDirectory("kiln-confined") { directory in
            let secret = try secret(in: directory)
            let name = "KILN_TEST_TOKEN_\(Self.marker())"
            setenv(name, "leaked", 1)
            defer { unsetenv(name) }
            let tree = directory.appending("tree")
            try FileManager.default.createDirectory(atPath: tree, withIntermediateDirectories: true)
            let home = try ScrubbedEnvironment.makeHome(under: directory.path)
            let jail = try EvaluationJail.resolve().get()
            let environment = ScrubbedEnvironment.variables(home: home)
            let argv = jail.command(
                "/usr/bin/env", [], workspace: tree, home: home, nixDirectories: [], environment: environment)
            let seen = try await SupervisedProcess(
                executable: argv[0], arguments: Array(argv.dropFirst()), environment: environment, workingDirectory: tree,
                deadline: .now + .seconds(30), maxSilent: nil, killGrace: .seconds(1)
            ).run(log: MemoryLog(), stop: StopSignal(), errorLine: { _ in })
            let variables = String(decoding: seen.standardOutput, as: UTF8.self).split(separator: "\n").map(String.init)
            #expect(Set(variables) == Set(environment.map { "\($0.key)=\($0.value)" } + ["PWD=\(tree)"]))
            #expect(!variables.contains { $0.hasPrefix(name) })
            // Nothing of the host outside the store, the work tree and the system's programs.
            let cat = jail.command("/usr/bin/cat", [secret.path], workspace: tree, home: home, nixDirectories: [], environment: environment)
            let read = try await SupervisedProcess(
                executable: cat[0], arguments: Array(cat.dropFirst()), environment: environment, workingDirectory: tree,
                deadline: .now + .seconds(30), maxSilent: nil, killGrace: .seconds(1)
            ).run(log: MemoryLog(), stop: StopSignal(), errorLine: { _ in })
            #expect(read.exitCode != 0)
            #expect(!String(decoding: read.standardOutput, as: UTF8.self).contains(secret.value))
        }
    }

    @Test(.timeLimit(.minutes(2))) func targetsOutsideTheWorkTreeAreRefusedAtRunTime() async throws {
        try await withTemporaryDirectory("kiln-confined") { directory in
            let tree = directory.appending("tree")
            try TestFlake(packages: [:]).write(to: tree)
            try FileManager.default.createDirectory(atPath: directory.appending("outside"), withIntermediateDirectories: true)
            try TestFlake(packages: ["x": TestFlake.succeeding("x")]).write(to: directory.appending("outside"))
            try FileManager.default.createSymbolicLink(atPath: tree + "/link", withDestinationPath: directory.appending("outside"))
            let cases: [(JobTarget, String)] = [
                (.installables(["path:\(directory.appending("outside"))#x"]), "is a flake reference outside the repository"),
                (.installables([directory.appending("outside") + "#x"]), "is an absolute path"),
                (.installables(["./../outside#x"]), "leaves the repository through '..'"),
                (.installables(["./link#x"]), "'./link' leads outside the repository through a symbolic link"),
                (.classic(file: "link/flake.nix", attribute: nil), "'link/flake.nix' leads outside the repository through a symbolic link"),
            ]
            for (target, expected) in cases {
                let report = await executor.run(job(target, in: tree), log: MemoryLog(), stop: StopSignal())
                guard case .failed(_, let reason) = report.outcome else {
                    Issue.record("\(target): expected a refusal, got \(report.outcome)")
                    continue
                }
                #expect(reason.contains(expected), "\(reason)")
            }
        }
    }

    @Test(.timeLimit(.minutes(2))) func theSandboxProbePassesOnlyWithTheSandboxOn() async throws {
        let binaries = try NixBinaries.resolve("nix").get()
        try await withTemporaryDirectory("kiln-probe") { directory in
            #expect(await SandboxProbe(binaries: binaries, options: executor.optionArguments, scratch: directory.path).problem() == nil)
            // The same probe with the sandbox off reads the host file: Kiln refuses to build.
            let unsandboxed = ["--option", "sandbox", "false", "--option", "substituters", ""]
            let problem = await SandboxProbe(binaries: binaries, options: unsandboxed, scratch: directory.path).problem()
            #expect(problem?.hasPrefix("builds are not sandboxed: a test build read") == true, "\(problem ?? "nil")")
        }
    }
}
