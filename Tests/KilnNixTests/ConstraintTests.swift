import Foundation
import KilnCore
import KilnPipeline
import KilnTesting
import Testing

@testable import KilnNix

/// tvix-build's build constraints as job keys, enforced with real nix builds: read-only host
/// paths from the server's allow-list, a `/bin/sh` in the sandbox, and the network for
/// fixed-output derivations only.
@Suite(.enabled(if: NixTest.enabled, "nix is not installed (set KILN_REQUIRE_NIX to make this a failure)"))
struct ConstraintTests {
    static func marker() -> String { String(UInt64.random(in: 1_000_000_000...9_999_999_999)) }

    /// Writes `default.nix` (one derivation running `script` with busybox as `$bb`) and builds it.
    func build(
        _ script: String, in directory: TemporaryDirectory, constraints: BuildConstraints, allowed: [String] = [],
        extraAttributes: String = ""
    ) async throws -> (JobReport, String) {
        let source = directory.appending("src-\(Self.marker())")
        try FileManager.default.createDirectory(atPath: source + "/bin", withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: TestFlake.busybox, toPath: source + "/bin/busybox")
        try """
            derivation {
              name = "constrained-\(Self.marker())";
              system = builtins.currentSystem;
              builder = "${./bin}/busybox";
              args = [ "sh" "-c" ("bb=${./bin}/busybox; " + \(NixString.literal(script))) ];
              \(extraAttributes)
            }
            """.write(toFile: source + "/default.nix", atomically: true, encoding: .utf8)
        var settings = NixSettings(options: NixTest.offlineOptions, killGrace: .seconds(2))
        settings.allowedReadOnlyPaths = allowed
        var job = TestJob(
            name: "constrained", target: .classic(file: "default.nix", attribute: nil), workspace: source, isPlainTree: true,
            timeout: .seconds(120), maxSilent: .seconds(60))
        job.constraints = constraints
        let log = MemoryLog()
        let report = await NixExecutor(settings: settings).run(job, log: log, stop: StopSignal())
        return (report, log.text)
    }

    @Test(.timeLimit(.minutes(2))) func readOnlyPathsAreSeenOnlyWhenAllowed() async throws {
        try await withTemporaryDirectory("kiln-ro") { directory in
            let shared = directory.appending("shared")
            try FileManager.default.createDirectory(atPath: shared, withIntermediateDirectories: true)
            try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: shared)
            let secret = Self.marker()
            try secret.write(toFile: shared + "/value", atomically: true, encoding: .utf8)
            try FileManager.default.setAttributes([.posixPermissions: 0o644], ofItemAtPath: shared + "/value")
            let script = "$bb mkdir $out; $bb cat \(shared)/value > $out/value"

            let (seen, log) = try await build(script, in: directory, constraints: BuildConstraints(readOnlyPaths: [shared]), allowed: [shared])
            #expect(seen.outcome == .succeeded, "\(log)")
            let output = try #require(seen.outputs.first?.path)
            #expect(try String(contentsOfFile: output + "/value", encoding: .utf8) == secret)

            // Without the constraint the sandbox hides it; without the server's leave the job is refused.
            let (hidden, _) = try await build(script, in: directory, constraints: BuildConstraints())
            guard case .failed = hidden.outcome else {
                Issue.record("a build without read-only-paths read \(shared): \(hidden.outcome)")
                return
            }
            let (refused, _) = try await build(script, in: directory, constraints: BuildConstraints(readOnlyPaths: [shared]), allowed: [])
            #expect(refused.outcome == .failed(exitCode: 0, reason: "read-only path \(shared) is not in this server's nix.allowed-read-only-paths"))
        }
    }

    @Test(.timeLimit(.minutes(2))) func binShIsThereOnlyWhenAskedFor() async throws {
        try await withTemporaryDirectory("kiln-binsh") { directory in
            let (provided, log) = try await build(
                "$bb mkdir $out; /bin/sh -c 'echo via-bin-sh' > $out/said", in: directory, constraints: BuildConstraints(provideBinSh: true))
            #expect(provided.outcome == .succeeded, "\(log)")
            let output = try #require(provided.outputs.first?.path)
            #expect(try String(contentsOfFile: output + "/said", encoding: .utf8) == "via-bin-sh\n")
            let (absent, absentLog) = try await build(
                "if [ -e /bin/sh ]; then echo there-is-a-bin-sh; exit 1; fi; $bb mkdir $out", in: directory, constraints: BuildConstraints())
            #expect(absent.outcome == .succeeded, "\(absentLog)")
        }
    }

    @Test(.timeLimit(.minutes(2))) func networkIsForFixedOutputDerivationsOnly() async throws {
        try await withTemporaryDirectory("kiln-network") { directory in
            let (refused, _) = try await build("$bb mkdir $out", in: directory, constraints: BuildConstraints(network: true))
            guard case .failed(_, let reason) = refused.outcome else {
                Issue.record("expected a refusal, got \(refused.outcome)")
                return
            }
            #expect(reason.contains("is not a fixed-output derivation: nix gives the network only to those"), "\(reason)")
            // A fixed-output derivation (its content known in advance) is built.
            let (fixed, log) = try await build(
                "echo hello > $out", in: directory, constraints: BuildConstraints(network: true),
                extraAttributes: """
                    outputHashMode = "flat"; outputHashAlgo = "sha256";
                    outputHash = "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03";
                    """)
            #expect(fixed.outcome == .succeeded, "\(log)")
        }
    }
}
