import Foundation
import KilnTesting
import Testing

/// Every sample in `webhooks/`, signed by `webhooks/send` as its forge signs it, is accepted by
/// a running Kiln with all five forges configured: pushes, tag pushes and pull requests build
/// (202); closed or merged pull requests build nothing (200).
@Suite struct WebhookSamplesTests {
    static let root = FileManager.default.currentDirectoryPath

    @Test(.timeLimit(.minutes(2))) func everySampleIsAnsweredAsItsEventDeserves() async throws {
        try await withTemporaryDirectory("kiln-samples") { directory in
            let repository = try TestGitRepository(at: directory.appending("origin"))
            try repository.write(".kiln.yml", "jobs: {}\n")
            let sha = try repository.commit("samples")
            try repository.write("more", "x\n")
            let later = try repository.commit("a pull request's next commit")
            try "sample-secret\n".write(toFile: directory.appending("secret"), atomically: true, encoding: .utf8)
            let forges = ["github", "gitlab", "bitbucket-cloud", "bitbucket-server", "gitea"]
            let config = """
                server: {listen: "127.0.0.1:0"}
                storage: {data-dir: data}
                nix: {options: {substituters: ""}}
                forges:
                \(forges.map { "  \($0): {type: \($0), api-url: \"http://127.0.0.1:9\", webhook-secret-files: [secret], status-api: none}" }.joined(separator: "\n"))
                repositories:
                \(forges.map { "  - {forge: \($0), name: example/hello, clone-url: \"file://\(repository.path)\"}" }.joined(separator: "\n"))
                """
            try config.write(toFile: directory.appending("kiln.yaml"), atomically: true, encoding: .utf8)
            let kiln = try await KilnInstance.start(config: directory.appending("kiln.yaml"))
            var seen = 0
            for forge in forges {
                let samples = try FileManager.default.contentsOfDirectory(atPath: "\(Self.root)/webhooks/\(forge)").filter { $0.hasSuffix(".json") }
                #expect(samples.count >= 5, "\(forge) has a sample for every event Kiln acts on")
                for sample in samples.sorted() {
                    // An update carries a new commit (the same one again is only an edit, and builds nothing).
                    let update = ["synchronize", "updated"].contains { sample.contains($0) }
                    let (status, output) = try await Self.send(
                        "webhooks/\(forge)/\(sample)", url: "\(kiln.url)/webhooks/\(forge)", secret: directory.appending("secret"),
                        sha: update ? later : sha)
                    let closing = ["closed", "merged", "fulfilled"].contains { sample.contains($0) }
                    #expect(status == 0, "\(forge)/\(sample): \(output)")
                    #expect(output.hasPrefix(closing ? "200 " : "202 "), "\(forge)/\(sample): \(output)")
                    seen += 1
                }
            }
            #expect(seen == 25)
            // A wrong secret is refused, as the forge's signature check says.
            try "not-the-secret".write(toFile: directory.appending("wrong"), atomically: true, encoding: .utf8)
            let (refused, answer) = try await Self.send(
                "webhooks/gitea/push.json", url: "\(kiln.url)/webhooks/gitea", secret: directory.appending("wrong"), sha: sha)
            #expect(refused == 1 && answer.hasPrefix("401 "), "\(answer)")
            await kiln.stop()
        }
    }

    static func send(_ sample: String, url: String, secret: String, sha: String) async throws -> (Int32, String) {
        try await Processes.run(
            "/usr/bin/python3", ["\(root)/webhooks/send", "\(root)/\(sample)", "--url", url, "--secret-file", secret, "--sha", sha])
    }
}
