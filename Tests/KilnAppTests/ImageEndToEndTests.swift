import Foundation
import KilnTesting
import Testing

/// A pipeline job with `image`, through `kiln serve`: pushed to the registry the server
/// configures, its digest in the job API, the events, the build page and the job's status.
@Suite(.enabled(if: NixTest.enabled, "nix is not installed (set KILN_REQUIRE_NIX to make this a failure)"))
struct ImageEndToEndTests {
    @Test(.timeLimit(.minutes(3))) func aJobsImageIsPushedAndShownEverywhere() async throws {
        let world = try await World.make()
        defer { Task { await world.close() } }
        let registry = try DockerRegistry(in: world.directory.appending("registry"), user: "kiln", password: "registry-password")
        try await registry.start()
        defer { registry.stop() }
        let config = try String(contentsOfFile: world.configPath, encoding: .utf8) + """

            registries:
              local:
                host: \(registry.host)
                auth-file: \(registry.authFile!)
                tls-verify: false
                attempts: 2
            """
        try config.write(toFile: world.configPath, atomically: true, encoding: .utf8)
        let marker = String(UInt64.random(in: 1_000_000_000...9_999_999_999))
        try TestFlake(packages: ["image": TestFlake.imageArchive("e2e \(marker)")]).write(to: world.repository.path)
        try world.repository.write(
            ".kiln.yml",
            """
            jobs:
              app:
                build: .#image
                image:
                  repository: \(registry.host)/team/app
                  tags: ["{build}", "c-{commit}", latest]
            """)
        let sha = try world.repository.commit("an image")
        let kiln = try await KilnInstance.start(config: world.configPath)
        defer { Task { await kiln.stop() } }
        let events = EventClient("\(kiln.url)/api/v1/events")
        defer { events.close() }
        try await eventually("the event stream to open", within: .seconds(10)) { events.comments > 0 }

        let buildID = try #require(try await kiln.push(repository: World.name, sha: sha, secret: World.secret).json["build_id"] as? Int)
        try await eventually("the job's status to be final", within: .seconds(120)) { world.github.states("kiln/app").count == 2 }
        #expect(world.github.states("kiln/app") == ["pending", "success"])

        let job = try #require((try await kiln.build(buildID))["jobs"] as? [[String: Any]]).first
        let image = try #require(job?["image"] as? [String: Any])
        #expect(image["push"] as? String == "pushed")
        #expect(image["repository"] as? String == "\(registry.host)/team/app")
        #expect(image["pushed_tags"] as? [String] == ["\(buildID)", "c-\(sha.prefix(12))", "latest"])
        let digest = try #require(image["digest"] as? String)
        #expect((image["layers"] as? [Any])?.count == 1)
        #expect((image["size_bytes"] as? Int ?? 0) > 0)
        for tag in ["\(buildID)", "latest"] {
            let (status, output) = try await Processes.run(
                "/usr/bin/skopeo",
                ["inspect", "--tls-verify=false", "--authfile", registry.authFile!, "docker://\(registry.host)/team/app:\(tag)"])
            #expect(status == 0, "\(output)")
            let inspected = try JSONSerialization.jsonObject(with: Data(output.utf8)) as? [String: Any]
            #expect(inspected?["Digest"] as? String == digest)
        }
        let description = world.github.statuses.last { $0.context == "kiln/app" }?.description ?? ""
        #expect(description.contains("; image \(digest.prefix(19))"), "\(description)")
        try await eventually("the job's end on the event stream", within: .seconds(10)) {
            events.events.contains { $0.type == "job.finished" }
        }
        let finished = try #require(events.events.first { $0.type == "job.finished" }?.json["image"] as? [String: Any])
        #expect(finished["digest"] as? String == digest)
        let page = try await HTTPTestClient.send("GET", "\(kiln.url)/builds/\(buildID)")
        #expect(page.body.contains("Image: pushed \(registry.host)/team/app:\(buildID),c-\(sha.prefix(12)),latest (\(digest)"))
        #expect(!page.body.contains("registry-password"))

        // An image for a host the server has no registry for: the build is refused, and says why.
        try world.repository.write(".kiln.yml", "jobs:\n  app:\n    build: .#image\n    image: {repository: elsewhere.example/app}\n")
        let elsewhere = try world.repository.commit("an image for another registry")
        let refusedID = try #require(
            try await kiln.push(repository: World.name, sha: elsewhere, secret: World.secret).json["build_id"] as? Int)
        let refused = try await eventually("the refused build to end", within: .seconds(60)) { () -> [String: Any]? in
            let build = try await kiln.build(refusedID)
            return build["state"] as? String == "failed" ? build : nil
        }
        #expect(
            (refused["summary"] as? String ?? "").contains("job 'app' pushes to elsewhere.example, which is not a registry of this server (its registries are \(registry.host))"),
            "\(refused)")
    }
}
