import Foundation
import KilnCore
import KilnPipeline
import KilnTesting
import Synchronization
import Testing

@testable import KilnNix

/// A log that also keeps the progress nix reported.
final class RecordingLog: LogSink {
    let log = MemoryLog()
    let reports = Mutex<[JobProgress]>([])

    func write(_ chunk: [UInt8]) { log.write(chunk) }
    func progress(_ progress: JobProgress) { reports.withLock { $0.append(progress) } }
    var text: String { log.text }
}

@Suite(.enabled(if: NixTest.enabled, "nix is not installed (set KILN_REQUIRE_NIX to make this a failure)"))
struct ExecutorFeatureTests {
    let executor = NixExecutor(settings: NixSettings(options: NixTest.offlineOptions, killGrace: .seconds(2)))

    static func marker() -> String { String(UInt64.random(in: 1_000_000_000...9_999_999_999)) }

    func job(_ target: JobTarget, in directory: String, system: String? = nil, logs: String? = nil, cache: Bool = false) -> TestJob {
        TestJob(
            name: "feature", target: target, system: system, workspace: directory, isPlainTree: true, timeout: .seconds(120),
            maxSilent: .seconds(60), pushToCache: cache, derivationLogDirectory: logs)
    }

    @Test(.timeLimit(.minutes(2))) func accountingIsPresentAndMatchesNix() async throws {
        try await withTemporaryDirectory("kiln-account") { directory in
            let marker = Self.marker()
            // A busy loop, so the builder uses measurable CPU.
            let busy = "echo \(marker); i=0; while [ $i -lt 400000 ]; do i=$((i+1)); done; $bb mkdir $out; echo ok > $out/x"
            try TestFlake(packages: ["busy\(marker)": busy]).write(to: directory.path)
            let log = RecordingLog()
            let report = await executor.run(
                job(.installables([".#busy\(marker)"]), in: directory.path, logs: directory.appending("drv-logs")),
                log: log, stop: StopSignal())
            #expect(report.outcome == .succeeded)
            #expect((report.cpuSeconds ?? 0) > 0.1, "cpu_seconds \(String(describing: report.cpuSeconds))")
            #expect((report.peakMemoryKilobytes ?? 0) > 1000)
            #expect(report.derivations.count == 1)
            #expect(report.derivations.first?.hasSuffix("-busy\(marker).drv") == true)
            let output = try #require(report.outputs.first)
            #expect(output.name == "out")
            let info = try runCommand(
                "/usr/bin/nix", ["path-info", "--extra-experimental-features", "nix-command", "--json", output.path])
            let described = try #require((try JSONSerialization.jsonObject(with: Data(info.utf8)) as? [[String: Any]])?.first)
            #expect(output.narSize == (described["narSize"] as? NSNumber)?.int64Value)
            #expect(output.narHash == described["narHash"] as? String)
            // Progress came from nix's own counts; the derivation got its own log.
            #expect(log.reports.withLock { $0.contains { $0.expected == 1 && $0.done == 1 } })
            let drvLog = directory.appending("drv-logs/\((report.derivations[0] as NSString).lastPathComponent).log")
            #expect(try String(contentsOfFile: drvLog, encoding: .utf8).contains(marker))
            #expect(log.text.contains("busy\(marker)> \(marker)"))
        }
    }

    @Test(.timeLimit(.minutes(2))) func logCapKeepsHeadAndTailOfARealBuild() async throws {
        try await withTemporaryDirectory("kiln-cap") { directory in
            let marker = Self.marker()
            let chatty = "echo first-\(marker); i=0; while [ $i -lt 3000 ]; do echo line-$i; i=$((i+1)); done; echo last-\(marker); $bb mkdir $out"
            try TestFlake(packages: ["chatty\(marker)": chatty]).write(to: directory.appending("src"))
            let path = directory.appending("job.log")
            let log = try JobLogFile(path: path, cap: 16 << 10)
            let report = await executor.run(job(.installables([".#chatty\(marker)"]), in: directory.appending("src")), log: log, stop: StopSignal())
            log.close()
            #expect(report.outcome == .succeeded)
            let text = try String(contentsOfFile: path, encoding: .utf8)
            #expect(text.contains("first-\(marker)"))
            #expect(text.contains("last-\(marker)"))
            #expect(text.contains("of output omitted"))
            #expect(!text.contains("line-1500\n"))
            #expect(text.utf8.count < 20 << 10)
        }
    }

    @Test(.timeLimit(.minutes(2))) func jobsSharingADerivationBuildItOnce() async throws {
        try await withTemporaryDirectory("kiln-shared") { directory in
            let marker = Self.marker()
            try TestFlake(packages: ["shared\(marker)": "echo \(marker); $bb sleep 1; $bb mkdir $out"]).write(to: directory.path)
            let first = MemoryLog()
            let second = MemoryLog()
            async let a = executor.run(job(.installables([".#shared\(marker)"]), in: directory.path), log: first, stop: StopSignal())
            async let b = executor.run(job(.installables([".#shared\(marker)"]), in: directory.path), log: second, stop: StopSignal())
            let (reportA, reportB) = await (a, b)
            #expect(reportA.outcome == .succeeded && reportB.outcome == .succeeded)
            #expect(reportA.outputs.map(\.path) == reportB.outputs.map(\.path))
            let builds = [first.text, second.text].filter { $0.contains("building '") && $0.contains("shared\(marker).drv") }
            #expect(builds.count == 1, "the derivation was built \(builds.count) times")
        }
    }

    @Test(.timeLimit(.minutes(2))) func classicFileAndAttribute() async throws {
        try await withTemporaryDirectory("kiln-classic") { directory in
            let marker = Self.marker()
            try TestFlake(packages: [:]).write(to: directory.path)
            try """
                let
                  bb = "${./bin}/busybox";
                  mk = name: derivation {
                    inherit name;
                    system = "x86_64-linux";
                    builder = bb;
                    args = [ "sh" "-c" "echo classic; ${bb} mkdir $out" ];
                  };
                in { tests = { unit = mk "unit-\(marker)"; }; other = mk "other-\(marker)"; }
                """.write(toFile: directory.appending("ci.nix"), atomically: true, encoding: .utf8)
            let one = await executor.run(job(.classic(file: "ci.nix", attribute: "tests.unit"), in: directory.path), log: MemoryLog(), stop: StopSignal())
            #expect(one.outcome == .succeeded)
            #expect(one.outputs.map { ($0.path as NSString).lastPathComponent.dropFirst(33) } == ["unit-\(marker)"])
            // Like nix-build, the whole file builds its top-level derivations (not nested sets).
            let all = await executor.run(job(.classic(file: "ci.nix", attribute: nil), in: directory.path), log: MemoryLog(), stop: StopSignal())
            #expect(all.outcome == .succeeded)
            #expect(all.outputs.map { ($0.path as NSString).lastPathComponent.dropFirst(33) } == ["other-\(marker)"])
            let missing = await executor.run(job(.classic(file: "ci.nix", attribute: "nope"), in: directory.path), log: MemoryLog(), stop: StopSignal())
            guard case .failed(_, let reason) = missing.outcome else {
                Issue.record("expected an evaluation failure, got \(missing.outcome)")
                return
            }
            #expect(reason.hasPrefix("evaluation failed: attribute 'nope' in selection path 'nope' not found"))
        }
    }

    @Test(.timeLimit(.minutes(2))) func flakeCheckBuildsEveryCheck() async throws {
        try await withTemporaryDirectory("kiln-check") { directory in
            let marker = Self.marker()
            try TestFlake(packages: [:]).write(to: directory.path)
            try """
                {
                  outputs = { self }: let
                    bb = "${./bin}/busybox";
                    mk = name: derivation { inherit name; system = "x86_64-linux"; builder = bb; args = [ "sh" "-c" "${bb} mkdir $out" ]; };
                  in {
                    checks.x86_64-linux = { lint = mk "lint-\(marker)"; unit = mk "unit-\(marker)"; };
                  };
                }
                """.write(toFile: directory.appending("flake.nix"), atomically: true, encoding: .utf8)
            let report = await executor.run(job(.flakeCheck, in: directory.path), log: MemoryLog(), stop: StopSignal())
            #expect(report.outcome == .succeeded)
            #expect(report.derivations.count == 2)
            #expect(report.outputs.count == 2)
        }
    }

    @Test(.timeLimit(.minutes(2))) func flakeWithoutChecksPasses() async throws {
        try await withTemporaryDirectory("kiln-nocheck") { directory in
            try TestFlake(packages: ["x": TestFlake.succeeding("x")]).write(to: directory.path)
            let log = MemoryLog()
            let report = await executor.run(job(.flakeCheck, in: directory.path), log: log, stop: StopSignal())
            #expect(report.outcome == .succeeded)
            #expect(report.outputs.isEmpty)
            #expect(log.text.contains("the flake has no checks for x86_64-linux"))
        }
    }

    @Test(.timeLimit(.minutes(1))) func unsupportedSystemFailsFastNamingIt() async throws {
        try await withTemporaryDirectory("kiln-system") { directory in
            try TestFlake(packages: ["x": TestFlake.succeeding("x")]).write(to: directory.path)
            let report = await executor.run(job(.installables([".#x"]), in: directory.path, system: "aarch64-linux"), log: MemoryLog(), stop: StopSignal())
            guard case .errored(let message) = report.outcome else {
                Issue.record("expected an error, got \(report.outcome)")
                return
            }
            #expect(message.hasPrefix("no builder for aarch64-linux: this machine builds "))
            #expect(message.contains("x86_64-linux") && message.hasSuffix("; add a machine for aarch64-linux to nix.builders"))
            // Failing fast: nothing was evaluated or built for a system no machine has.
            #expect(report.derivations.isEmpty)
        }
    }

    @Test func builderSystemsAreReadFromTheBuildersSetting() {
        #expect(HostInfo.builderSystems("ssh://a aarch64-linux,armv7l-linux /k 4; ssh-ng://b - - 2", local: "x86_64-linux")
            == ["aarch64-linux", "armv7l-linux", "x86_64-linux"])
        #expect(HostInfo.builderSystems("", local: "x86_64-linux").isEmpty)
    }

    @Test(.timeLimit(.minutes(2))) func coloursAreKeptInTheLog() async throws {
        try await withTemporaryDirectory("kiln-colour") { directory in
            let marker = Self.marker()
            try TestFlake(packages: ["colour\(marker)": "printf '\\033[31mred-\(marker)\\033[0m\\n'; $bb mkdir $out"]).write(to: directory.path)
            let log = MemoryLog()
            let report = await executor.run(job(.installables([".#colour\(marker)"]), in: directory.path), log: log, stop: StopSignal())
            #expect(report.outcome == .succeeded)
            #expect(log.text.contains("\u{1B}[31mred-\(marker)\u{1B}[0m"))
        }
    }
}

@Suite(.enabled(if: NixTest.enabled, "nix is not installed (set KILN_REQUIRE_NIX to make this a failure)"))
struct BinaryCacheTests {
    /// A signing key pair made with `nix key`.
    static func keys(in directory: TemporaryDirectory) throws -> (secretFile: String, publicKey: String) {
        let secret = try runCommand("/usr/bin/nix", ["key", "generate-secret", "--extra-experimental-features", "nix-command", "--key-name", "kiln-test-1"])
        let public_ = try runCommand("/usr/bin/nix", ["key", "convert-secret-to-public", "--extra-experimental-features", "nix-command"], input: secret)
        try secret.write(toFile: directory.appending("cache.key"), atomically: true, encoding: .utf8)
        return (directory.appending("cache.key"), public_.trimmingCharacters(in: .whitespacesAndNewlines))
    }

    func build(
        pushingTo store: String, key: String, in directory: TemporaryDirectory, options: [String: String] = [:],
        log: MemoryLog = MemoryLog()
    ) async throws -> JobReport {
        let marker = String(UInt64.random(in: 1_000_000_000...9_999_999_999))
        let workspace = directory.appending("src")
        try TestFlake(packages: ["cached\(marker)": TestFlake.succeeding("cached-\(marker)")]).write(to: workspace)
        let executor = NixExecutor(
            settings: NixSettings(
                options: NixTest.offlineOptions.merging(options) { $1 },
                cache: CacheSettings(pushTo: store, secretKeyFile: key)))
        return await executor.run(
            TestJob(
                name: "cached", target: .installables([".#cached\(marker)"]), workspace: workspace, isPlainTree: true,
                timeout: .seconds(120), maxSilent: .seconds(60), pushToCache: true),
            log: log, stop: StopSignal())
    }

    func verify(_ path: String, in store: String, publicKey: String) throws {
        _ = try runCommand(
            "/usr/bin/nix",
            ["store", "verify", "--extra-experimental-features", "nix-command", "--store", store, "--sigs-needed", "1",
             "--trusted-public-keys", publicKey, "--no-contents", path])
    }

    @Test(.timeLimit(.minutes(2))) func pushToAFileStoreIsSigned() async throws {
        try await withTemporaryDirectory("kiln-cache") { directory in
            let (key, publicKey) = try Self.keys(in: directory)
            let store = "file://" + directory.appending("cache")
            let report = try await build(pushingTo: store, key: key, in: directory)
            #expect(report.outcome == .succeeded)
            #expect(report.cache == .pushed(to: store, attempts: 1))
            let output = try #require(report.outputs.first)
            let hash = (output.path as NSString).lastPathComponent.prefix(32)
            #expect(FileManager.default.fileExists(atPath: directory.appending("cache/\(hash).narinfo")))
            try verify(output.path, in: store, publicKey: publicKey)
            #expect(throws: CommandFailed.self) {
                try verify(output.path, in: store, publicKey: "other-1:" + String(publicKey.split(separator: ":")[1].reversed()))
            }
        }
    }

    @Test(.timeLimit(.minutes(2))) func pushToAnHTTPCacheIsSigned() async throws {
        try await withTemporaryDirectory("kiln-http-cache") { directory in
            let (key, publicKey) = try Self.keys(in: directory)
            let nginx = try NginxCache(in: directory.appending("nginx"))
            defer { nginx.stop() }
            try await eventually("nginx to listen", within: .seconds(10)) { nginx.isReady() }
            let report = try await build(pushingTo: nginx.url, key: key, in: directory)
            #expect(report.outcome == .succeeded)
            #expect(report.cache == .pushed(to: nginx.url, attempts: 1))
            let output = try #require(report.outputs.first)
            let hash = (output.path as NSString).lastPathComponent.prefix(32)
            let narinfo = try String(contentsOfFile: nginx.root + "/\(hash).narinfo", encoding: .utf8)
            #expect(narinfo.contains("Sig: kiln-test-1:"))
            try verify(output.path, in: nginx.url, publicKey: publicKey)
        }
    }

    @Test(.timeLimit(.minutes(2))) func failedPushIsReportedWithoutFailingTheJob() async throws {
        try await withTemporaryDirectory("kiln-cache-fail") { directory in
            let (key, _) = try Self.keys(in: directory)
            // Nothing listens there.
            let report = try await build(pushingTo: "http://127.0.0.1:9", key: key, in: directory, options: ["download-attempts": "1"])
            #expect(report.outcome == .succeeded)
            guard case .failed(_, let attempts) = report.cache else {
                Issue.record("expected a failed push, got \(String(describing: report.cache))")
                return
            }
            #expect(attempts == 3)
        }
    }

    /// The cache URL's query values (and user information) appear nowhere Kiln writes.
    @Test(.timeLimit(.minutes(2))) func theCacheURLsSecretsStayOutOfTheLogAndReport() async throws {
        try await withTemporaryDirectory("kiln-cache-secret") { directory in
            let (key, _) = try Self.keys(in: directory)
            let token = "tok\(UInt64.random(in: 1_000_000_000...9_999_999_999))"
            let log = MemoryLog()
            let report = try await build(
                pushingTo: "http://127.0.0.1:9/cache?compression=xz&kiln-token=\(token)", key: key, in: directory,
                options: ["download-attempts": "1"], log: log)
            guard case .failed(let error, _) = report.cache else {
                Issue.record("expected a failed push, got \(String(describing: report.cache))")
                return
            }
            #expect(!error.contains(token))
            #expect(!log.text.contains(token))
            #expect(log.text.contains("http://127.0.0.1:9/cache?compression=…&kiln-token=…"))
        }
        #expect(CacheSettings.display("https://user:pw@cache.example.org/x?secret-key=/k") == "https://cache.example.org/x?secret-key=…")
        #expect(CacheSettings.display("file:///var/cache/kiln") == "file:///var/cache/kiln")
    }
}
