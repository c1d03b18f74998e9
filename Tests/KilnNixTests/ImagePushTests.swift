import Foundation
import KilnCore
import KilnPipeline
import KilnTesting
import Testing

@testable import KilnNix

/// Images pushed to a real registry (Debian's docker-registry on loopback) with skopeo, from
/// outputs built by real nix: a docker-archive tarball, and a stream script run in the sandbox.
@Suite(.enabled(if: NixTest.enabled, "nix is not installed (set KILN_REQUIRE_NIX to make this a failure)"), .serialized)
struct ImagePushTests {
    let executor = NixExecutor(settings: NixSettings(options: NixTest.offlineOptions, killGrace: .seconds(2)))

    static func marker() -> String { String(UInt64.random(in: 1_000_000_000...9_999_999_999)) }

    /// Builds `script` (a TestFlake package) as a job that pushes its output to `push`.
    func build(_ script: String, in directory: TemporaryDirectory, push: ImagePush, log: RecordingLog) async throws -> JobReport {
        let name = "image\(Self.marker())"
        try TestFlake(packages: [name: script]).write(to: directory.appending("src"))
        var job = TestJob(
            name: "image", target: .installables([".#\(name)"]), workspace: directory.appending("src"), isPlainTree: true,
            timeout: .seconds(120), maxSilent: .seconds(60))
        job.image = push
        return await executor.run(job, log: log, stop: StopSignal())
    }

    /// What `skopeo inspect` says of `reference` (`docker://…`).
    static func inspect(_ reference: String, authFile: String? = nil) async throws -> [String: Any] {
        let (status, output) = try await Processes.run(
            "/usr/bin/skopeo", ["inspect", "--tls-verify=false"] + (authFile.map { ["--authfile", $0] } ?? []) + [reference])
        try #require(status == 0, "skopeo inspect \(reference): \(output)")
        return try #require(try JSONSerialization.jsonObject(with: Data(output.utf8)) as? [String: Any])
    }

    static func local(_ registry: DockerRegistry, attempts: Int = 2, authFile: String? = nil, name: String = "local") -> Registry {
        Registry(name: name, host: registry.host, authFile: authFile ?? registry.authFile, tlsVerify: false, attempts: attempts)
    }

    @Test(.timeLimit(.minutes(2))) func anArchiveIsPushedUnderEachTagWithItsDigest() async throws {
        try await withTemporaryDirectory("kiln-image") { directory in
            let registry = try DockerRegistry(in: directory.appending("registry"))
            try await registry.start()
            defer { registry.stop() }
            let log = RecordingLog()
            let push = ImagePush(path: "team/app", tags: ["42", "latest"], required: false, registry: Self.local(registry))
            let report = try await build(TestFlake.imageArchive("hello \(Self.marker())"), in: directory, push: push, log: log)
            #expect(report.outcome == .succeeded, "\(log.text)")
            let image = try #require(report.image)
            #expect(image.outcome == .pushed, "\(image.summary)")
            #expect(image.repository == "\(registry.host)/team/app")
            #expect(image.tags == ["42", "latest"])
            #expect(image.attempts == 1)
            #expect(image.usedFallback == false)
            #expect(image.layers.count == 1)
            #expect((image.size ?? 0) > 0)
            let digest = try #require(image.digest)
            #expect(digest.hasPrefix("sha256:") && digest.count == 71)
            for tag in ["42", "latest"] {
                let inspected = try await Self.inspect("docker://\(registry.host)/team/app:\(tag)")
                #expect(inspected["Digest"] as? String == digest, "tag \(tag)")
                #expect((inspected["Layers"] as? [String]) == image.layers.map(\.digest))
            }
            // The job's status description names the image.
            #expect(JobStateMachine.conclusion(of: report).2.hasSuffix("; image \(digest.prefix(19))"))
            #expect(log.text.contains("pushed \(registry.host)/team/app:42,latest (\(digest)"))
        }
    }

    @Test(.timeLimit(.minutes(2))) func aStreamScriptRunsInTheSandboxNotOnTheHost() async throws {
        try await withTemporaryDirectory("kiln-image-stream") { directory in
            let registry = try DockerRegistry(in: directory.appending("registry"))
            try await registry.start()
            defer { registry.stop() }
            // Readable and writable by anyone: only the sandbox keeps the script from it.
            let hostMarker = directory.appending("host-marker")
            try FileManager.default.setAttributes([.posixPermissions: 0o777], ofItemAtPath: directory.path)
            let log = RecordingLog()
            let push = ImagePush(path: "app", tags: ["stream"], required: true, registry: Self.local(registry))
            let report = try await build(
                TestFlake.imageStream("streamed \(Self.marker())", hostMarker: hostMarker), in: directory, push: push, log: log)
            #expect(report.outcome == .succeeded, "\(log.text)")
            let image = try #require(report.image)
            #expect(image.outcome == .pushed, "\(image.summary)")
            #expect(log.text.contains("running /nix/store/"))
            #expect(!FileManager.default.fileExists(atPath: hostMarker), "the stream script ran on the host")
            let inspected = try await Self.inspect("docker://\(registry.host)/app:stream")
            #expect(inspected["Digest"] as? String == image.digest)
        }
    }

    @Test(.timeLimit(.minutes(2))) func aCompressedArchiveIsUnpackedInTheSandbox() async throws {
        // buildLayeredImage writes .tar.gz, which skopeo 1.9 cannot read.
        try await withTemporaryDirectory("kiln-image-gzip") { directory in
            let registry = try DockerRegistry(in: directory.appending("registry"))
            try await registry.start()
            defer { registry.stop() }
            let log = RecordingLog()
            let push = ImagePush(path: "app", tags: ["gz"], required: true, registry: Self.local(registry))
            let report = try await build(
                TestFlake.imageArchive("gzip \(Self.marker())", compressed: true), in: directory, push: push, log: log)
            #expect(report.outcome == .succeeded, "\(log.text)")
            #expect(log.text.contains("unpacking /nix/store/"))
            let inspected = try await Self.inspect("docker://\(registry.host)/app:gz")
            #expect(inspected["Digest"] as? String == report.image?.digest)
        }
    }

    @Test(.timeLimit(.minutes(2))) func credentialsComeFromTheAuthFileAndNeverReachTheLog() async throws {
        try await withTemporaryDirectory("kiln-image-auth") { directory in
            let password = "s3cret-\(Self.marker())"
            let registry = try DockerRegistry(in: directory.appending("registry"), user: "kiln", password: password)
            try await registry.start()
            defer { registry.stop() }
            let archive = TestFlake.imageArchive("auth \(Self.marker())")
            let log = RecordingLog()
            let report = try await build(
                archive, in: directory, push: ImagePush(path: "team/app", tags: ["ok"], required: false, registry: Self.local(registry)),
                log: log)
            #expect(report.image?.outcome == .pushed, "\(report.image?.summary ?? "") \(log.text)")
            let inspected = try await Self.inspect("docker://\(registry.host)/team/app:ok", authFile: registry.authFile)
            #expect(inspected["Digest"] as? String == report.image?.digest)

            // The wrong password: refused on each attempt, said so, and the job still succeeds
            // (the image is not required).
            let wrong = directory.appending("wrong-auth.json")
            let encoded = Data("kiln:not-\(password)".utf8).base64EncodedString()
            try #"{"auths":{"\#(registry.host)":{"auth":"\#(encoded)"}}}"#.write(toFile: wrong, atomically: true, encoding: .utf8)
            let refusedLog = RecordingLog()
            let refused = try await build(
                archive, in: directory,
                push: ImagePush(path: "team/app", tags: ["no"], required: false, registry: Self.local(registry, authFile: wrong)),
                log: refusedLog)
            #expect(refused.outcome == .succeeded)
            let image = try #require(refused.image)
            #expect(image.outcome == .failed)
            #expect(image.attempts == 2)
            #expect(image.message?.lowercased().contains("unauthorized") == true, "\(image.message ?? "")")
            #expect(JobStateMachine.conclusion(of: refused).2.hasSuffix("; image push failed"))
            for text in [log.text, refusedLog.text, image.summary] {
                #expect(!text.contains(password))
                #expect(!text.contains(encoded))
            }
        }
    }

    @Test(.timeLimit(.minutes(2))) func aRegistryThatRefusesIsRetriedWithBackoff() async throws {
        try await withTemporaryDirectory("kiln-image-retry") { directory in
            // Configured, but not started until the first attempt has failed.
            let registry = try DockerRegistry(in: directory.appending("registry"))
            defer { registry.stop() }
            let log = RecordingLog()
            let push = ImagePush(path: "app", tags: ["late"], required: true, registry: Self.local(registry, attempts: 4))
            async let report = build(TestFlake.imageArchive("late \(Self.marker())"), in: directory, push: push, log: log)
            try await eventually("the first attempt to fail", within: .seconds(60)) { log.text.contains("retrying the image push in 1 s") }
            try await registry.start()
            let image = try #require(try await report.image)
            #expect(image.outcome == .pushed, "\(image.summary) \(log.text)")
            #expect(image.attempts >= 2)
            #expect(log.text.contains("image push to \(registry.host) failed"))
            let inspected = try await Self.inspect("docker://\(registry.host)/app:late")
            #expect(inspected["Digest"] as? String == image.digest)
        }
    }

    @Test(.timeLimit(.minutes(2))) func afterTheLastAttemptTheImageGoesToTheFallback() async throws {
        try await withTemporaryDirectory("kiln-image-fallback") { directory in
            let down = try DockerRegistry(in: directory.appending("down"))  // never started
            let fallback = try DockerRegistry(in: directory.appending("fallback"))
            try await fallback.start()
            defer { fallback.stop() }
            var primary = Self.local(down, attempts: 1, name: "main")
            primary.fallback = "spare"
            let log = RecordingLog()
            let push = ImagePush(
                path: "team/app", tags: ["7"], required: true, registry: primary, fallback: Self.local(fallback, name: "spare"))
            let report = try await build(TestFlake.imageArchive("fallback \(Self.marker())"), in: directory, push: push, log: log)
            #expect(report.outcome == .succeeded, "\(log.text)")
            let image = try #require(report.image)
            #expect(image.outcome == .pushed)
            #expect(image.usedFallback)
            #expect(image.repository == "\(fallback.host)/team/app")
            #expect(image.attempts == 2)
            #expect(image.summary.contains("to the fallback registry"))
            #expect(log.text.contains("pushing to the fallback registry spare (\(fallback.host)) after 1 failed attempts at \(down.host)"))
            let inspected = try await Self.inspect("docker://\(fallback.host)/team/app:7")
            #expect(inspected["Digest"] as? String == image.digest)
        }
    }

    @Test(.timeLimit(.minutes(2))) func anOutputThatIsNotAnImageFailsARequiredPush() async throws {
        try await withTemporaryDirectory("kiln-image-not") { directory in
            let registry = try DockerRegistry(in: directory.appending("registry"))  // not needed: nothing is pushed
            let log = RecordingLog()
            let push = ImagePush(path: "app", tags: ["x"], required: true, registry: Self.local(registry))
            let report = try await build(TestFlake.succeeding("plain \(Self.marker())"), in: directory, push: push, log: log)
            guard case .failed(_, let reason) = report.outcome else {
                Issue.record("expected a failure, got \(report.outcome)")
                return
            }
            #expect(reason.contains("is a directory, not an image: build it with dockerTools.buildLayeredImage"), "\(reason)")
            #expect(report.image?.outcome == .failed)
            #expect(report.image?.attempts == 0)
        }
    }
}
