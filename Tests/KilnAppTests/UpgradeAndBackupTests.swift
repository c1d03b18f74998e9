import Foundation
import KilnTesting
import Testing

/// The README's upgrade and backup steps, done: a database made by an earlier Kiln opens and
/// migrates, and `sqlite3 .backup` of a running Kiln restores into a working one.
@Suite struct UpgradeAndBackupTests {
    /// A database made by Kiln at commit 351f2f2 (schema v8): one push of the example repository,
    /// built, its statuses recorded. Made once by that release's `kiln serve`; never regenerated.
    static let earlierDatabase = FileManager.default.currentDirectoryPath + "/Tests/KilnAppTests/Fixtures/kiln-351f2f2.sqlite"

    static func config(dataDir: String) -> String {
        """
        server: {listen: "127.0.0.1:0"}
        storage: {data-dir: \(dataDir)}
        nix: {options: {substituters: ""}}
        forges:
          github: {type: github, webhook-secret-files: [secret], status-api: none}
        repositories:
          - {forge: github, name: example/hello, clone-url: "file:///nowhere"}
        """
    }

    @Test(.timeLimit(.minutes(2))) func aDatabaseOfTheEarlierReleaseOpensAndMigrates() async throws {
        try await withTemporaryDirectory("kiln-upgrade") { directory in
            try FileManager.default.createDirectory(atPath: directory.appending("data"), withIntermediateDirectories: true)
            try FileManager.default.copyItem(atPath: Self.earlierDatabase, toPath: directory.appending("data/kiln.sqlite"))
            try "secret".write(toFile: directory.appending("secret"), atomically: true, encoding: .utf8)
            try Self.config(dataDir: "data").write(toFile: directory.appending("kiln.yaml"), atomically: true, encoding: .utf8)
            let kiln = try await KilnInstance.start(config: directory.appending("kiln.yaml"))
            let old = try await kiln.build(1)
            #expect(old["state"] as? String == "succeeded" && old["repository"] as? String == "example/hello", "\(old)")
            #expect((old["jobs"] as? [Any])?.isEmpty == false)
            let page = try await HTTPTestClient.send("GET", "\(kiln.url)/builds/1")
            #expect(page.status == 200)
            // The upgraded database takes new work.
            let pushed = try await kiln.push(repository: "example/hello", sha: String(repeating: "2", count: 40), secret: "secret")
            #expect(pushed.status == 202 && (pushed.json["build_id"] as? Int ?? 0) > 1)
            await kiln.stop()
        }
    }

    @Test(.timeLimit(.minutes(2))) func aBackupOfARunningKilnRestoresIntoAWorkingOne() async throws {
        try await withTemporaryDirectory("kiln-backup") { directory in
            try "secret".write(toFile: directory.appending("secret"), atomically: true, encoding: .utf8)
            try Self.config(dataDir: "data").write(toFile: directory.appending("kiln.yaml"), atomically: true, encoding: .utf8)
            try Self.config(dataDir: "restored").write(toFile: directory.appending("restored.yaml"), atomically: true, encoding: .utf8)
            let kiln = try await KilnInstance.start(config: directory.appending("kiln.yaml"))
            var ids: [Int] = []
            for index in 0..<3 {
                let pushed = try await kiln.push(repository: "example/hello", sha: String(repeating: "\(index + 3)", count: 40), secret: "secret")
                ids.append(try #require(pushed.json["build_id"] as? Int))
            }
            // While it runs: the backup the README shows.
            try FileManager.default.createDirectory(atPath: directory.appending("restored"), withIntermediateDirectories: true)
            let backup = try await Processes.run(
                "/usr/bin/sqlite3", [directory.appending("data/kiln.sqlite"), ".backup \(directory.appending("restored/kiln.sqlite"))"])
            #expect(backup.status == 0, "\(backup.output)")
            await kiln.stop()

            let restored = try await KilnInstance.start(config: directory.appending("restored.yaml"))
            for id in ids {
                #expect((try await restored.build(id))["repository"] as? String == "example/hello")
            }
            let again = try await restored.push(repository: "example/hello", sha: String(repeating: "9", count: 40), secret: "secret")
            #expect(again.status == 202 && (again.json["build_id"] as? Int ?? 0) > ids.max()!)
            await restored.stop()
        }
    }
}
