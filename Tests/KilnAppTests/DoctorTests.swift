import Foundation
import KilnCore
import KilnTesting
import Testing

@testable import KilnApp

/// `kiln doctor` against the strict fake forges: good and bad credentials, a clone URL that
/// works and one that does not, nix present and missing.
@Suite(.enabled(if: NixTest.enabled, "nix is not installed (set KILN_REQUIRE_NIX to make this a failure)"))
struct DoctorTests {
    func configuration(_ directory: TemporaryDirectory, forge: FakeForge, token: String, cloneURL: String, nix: String = "nix") throws
        -> KilnConfiguration
    {
        try "secret".write(toFile: directory.appending("secret"), atomically: true, encoding: .utf8)
        try token.write(toFile: directory.appending("token"), atomically: true, encoding: .utf8)
        try """
            server: {listen: "127.0.0.1:0", public-url: "\(forge.url)"}
            storage: {data-dir: data}
            nix: {binary: \(nix), options: {substituters: ""}}
            forges:
              github: {type: github, api-url: "\(forge.url)", webhook-secret-files: [secret], token-file: token}
            repositories:
              - {forge: github, name: octo/hello, clone-url: "\(cloneURL)"}
            """.write(toFile: directory.appending("kiln.yaml"), atomically: true, encoding: .utf8)
        return try KilnConfiguration.load(path: directory.appending("kiln.yaml"))
    }

    @Test(.timeLimit(.minutes(2))) func aGoodSetupPassesAndABadOneSaysWhatToDo() async throws {
        let forge = try await FakeForge(.github, token: "good-token", repositories: ["octo/hello"])
        try await withTemporaryDirectory("kiln-doctor") { directory in
            let origin = try TestGitRepository(at: directory.appending("origin"))
            try origin.write("README", "hello\n")
            _ = try origin.commit("first")
            let good = await Doctor(try configuration(directory, forge: forge, token: "good-token", cloneURL: "file://\(origin.path)")).run()
            func check(_ checks: [Doctor.Check], _ name: String) -> Doctor.Check? { checks.first { $0.name == name } }
            #expect(check(good, "nix")?.ok == true, "\(good)")
            #expect(check(good, "forge github: octo/hello")?.ok == true, "\(good)")
            #expect(check(good, "clone octo/hello")?.ok == true && check(good, "clone octo/hello")?.detail.contains("lists") == true)
            #expect(check(good, "database")?.ok == true && check(good, "public URL")?.ok == true)
            #expect(good.contains { $0.name == "disk /nix/store" } && good.contains { $0.name == "build users" })

            let bad = await Doctor(
                try configuration(directory, forge: forge, token: "wrong-token", cloneURL: "file://\(directory.appending("nowhere"))",
                    nix: "/nonexistent/nix")
            ).run()
            let refused = try #require(check(bad, "forge github: octo/hello"))
            #expect(!refused.ok && refused.detail.contains("401") && refused.fix?.contains("forges.github") == true, "\(refused)")
            let clone = try #require(check(bad, "clone octo/hello"))
            #expect(!clone.ok && clone.fix?.contains("repositories[0].clone-url") == true, "\(clone)")
            let nix = try #require(check(bad, "nix"))
            #expect(!nix.ok && nix.fix?.contains("nix-bin") == true, "\(nix)")

            // The command: exit 1 when anything fails, and JSON for scripts.
            let kiln = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("kiln").path
            let ran = try await Processes.run(kiln, ["doctor", "--config", directory.appending("kiln.yaml"), "--format", "json"])
            let report = try JSONSerialization.jsonObject(with: Data(ran.output.utf8)) as? [String: Any]
            #expect(ran.status == 1 && report?["ok"] as? Bool == false, "\(ran.output)")
            #expect((report?["checks"] as? [[String: Any]])?.contains { $0["name"] as? String == "nix" && $0["ok"] as? Bool == false } == true)
        }
        await forge.stop()
    }
}

extension DoctorTests {
    /// Every forge's read-only call, with the token it sends as that forge wants it.
    @Test(arguments: FakeForge.Kind.allCases)
    func eachForgesCredentialsAreCheckedAgainstItsAPI(kind: FakeForge.Kind) async throws {
        let forge = try await FakeForge(kind, token: "good-token", repositories: ["octo/hello"])
        try await withTemporaryDirectory("kiln-doctor-forge") { directory in
            for (token, passes) in [("good-token", true), ("wrong-token", false)] {
                try "secret".write(toFile: directory.appending("secret"), atomically: true, encoding: .utf8)
                try token.write(toFile: directory.appending("token"), atomically: true, encoding: .utf8)
                try """
                    storage: {data-dir: data}
                    forges:
                      f: {type: \(kind.rawValue), api-url: "\(forge.url)", webhook-secret-files: [secret], token-file: token}
                    repositories:
                      - {forge: f, name: octo/hello, clone-url: "file:///nowhere"}
                      - {forge: f, name: octo/other, clone-url: "file:///nowhere"}
                    """.write(toFile: directory.appending("kiln.yaml"), atomically: true, encoding: .utf8)
                let checks = await Doctor(try KilnConfiguration.load(path: directory.appending("kiln.yaml"))).forges()
                #expect(checks.map(\.name) == ["forge f: octo/hello", "forge f: octo/other"])
                #expect(checks[0].ok == passes, "\(kind) \(token): \(checks[0])")
                #expect(!checks[1].ok && checks[1].detail.contains(passes ? "404" : "401"), "a repository the token cannot read: \(checks[1])")
            }
        }
        await forge.stop()
    }
}

extension DoctorTests {
    /// With registries configured: skopeo is found, a running registry answers, a stopped one does not.
    @Test(.timeLimit(.minutes(3))) func registriesAreChecked() async throws {
        let forge = try await FakeForge(.github, token: "good-token", repositories: ["octo/hello"])
        try await withTemporaryDirectory("kiln-doctor-registry") { directory in
            let up = try DockerRegistry(in: directory.appending("up"))
            try await up.start()
            defer { up.stop() }
            let down = try DockerRegistry(in: directory.appending("down"))  // never started
            var configuration = try configuration(directory, forge: forge, token: "good-token", cloneURL: "file:///nowhere")
            configuration.registries = [
                Registry(name: "up", host: up.host, tlsVerify: false), Registry(name: "down", host: down.host, tlsVerify: false),
            ]
            let checks = await Doctor(configuration).run()
            #expect(checks.first { $0.name == "skopeo" }?.ok == true, "\(checks)")
            #expect(checks.first { $0.name == "registry up" }?.ok == true, "\(checks)")
            let stopped = try #require(checks.first { $0.name == "registry down" })
            #expect(!stopped.ok && stopped.fix == "check registries.down.host and tls-verify", "\(stopped)")
        }
        await forge.stop()
    }
}
