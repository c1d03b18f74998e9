import Foundation
import KilnTesting
import Testing

/// Ad-hoc builds through `kiln serve` with real nix: from an expression with `env`, from a
/// template, and from a git repository served over smart HTTP with a token; every refusal says
/// what is wrong.
@Suite(.enabled(if: NixTest.enabled, "nix is not installed (set KILN_REQUIRE_NIX to make this a failure)"))
struct AdHocBuildTests {
    static let adminToken = "adhoc-admin-token-0123456789"

    /// A world whose server takes ad-hoc builds, with `busybox` in the store for expressions.
    static func world(gitOrigins: [String], cachixHosts: [String] = [], igluWorkdir: String? = nil) async throws -> (World, busybox: String) {
        let world = try await World.make()
        try adminToken.write(toFile: world.directory.appending("admin-token"), atomically: true, encoding: .utf8)
        for directory in ["templates", "secrets", "bb/bin"] {
            try FileManager.default.createDirectory(atPath: world.directory.appending(directory), withIntermediateDirectories: true)
        }
        try FileManager.default.copyItem(atPath: TestFlake.busybox, toPath: world.directory.appending("bb/bin/busybox"))
        let (status, added) = try await Processes.run("/usr/bin/nix-store", ["--add", world.directory.appending("bb/bin")])
        try #require(status == 0, "\(added)")
        let busybox = added.trimmingCharacters(in: .whitespacesAndNewlines) + "/busybox"
        let config = try String(contentsOfFile: world.configPath, encoding: .utf8)
            .replacingOccurrences(of: "  max-body-bytes: 65536\n", with: "  max-body-bytes: 65536\n  admin-token-file: admin-token\n")
            + """

            build-service:
              git-hosts: [\((gitOrigins.map { "\"\($0)\"" } + ["github.com"]).joined(separator: ", "))]
              templates-dir: templates
              secrets-dir: secrets
              cachix-hosts: [\(cachixHosts.map { "\"\($0)\"" }.joined(separator: ", "))]
            \(igluWorkdir.map { "  iglu-workdir: \($0)" } ?? "")
            """
        try config.write(toFile: world.configPath, atomically: true, encoding: .utf8)
        return (world, busybox)
    }

    static func submit(_ kiln: KilnInstance, _ request: [String: Any], token: String? = adminToken) async throws -> HTTPTestClient.Answer {
        try await HTTPTestClient.send(
            "POST", "\(kiln.url)/api/v1/builds", headers: token.map { [("Authorization", "Bearer \($0)")] } ?? [],
            body: Array(try JSONSerialization.data(withJSONObject: request)))
    }

    static func finished(_ kiln: KilnInstance, _ id: Int) async throws -> [String: Any] {
        try await eventually("build #\(id) to end", within: .seconds(90)) { () -> [String: Any]? in
            let build = try await kiln.build(id)
            return ["succeeded", "failed", "errored", "cancelled"].contains(build["state"] as? String ?? "") ? build : nil
        }
    }

    static func output(_ build: [String: Any], _ file: String) throws -> String {
        let job = try #require((build["jobs"] as? [[String: Any]])?.first)
        let path = try #require((job["outputs"] as? [[String: Any]])?.first?["path"] as? String)
        return try String(contentsOfFile: path + "/" + file, encoding: .utf8)
    }

    @Test(.timeLimit(.minutes(3))) func expressionsAndTemplatesBuildWithTheirValues() async throws {
        let (world, busybox) = try await Self.world(gitOrigins: [])
        defer { Task { await world.close() } }
        let marker = String(UInt64.random(in: 1_000_000_000...9_999_999_999))
        try """
            { env ? {}, name ? "template" }:
            let bb = "${\(busybox.dropLast(8))}/busybox"; in
            derivation {
              name = "tmpl-\(marker)"; system = builtins.currentSystem; builder = bb;
              args = [ "sh" "-c" "${bb} mkdir $out; echo ${name}:${env.PORT or "none"} > $out/said" ];
            }
            """.write(toFile: world.directory.appending("templates/hello.nix"), atomically: true, encoding: .utf8)
        let kiln = try await KilnInstance.start(config: world.configPath)
        defer { Task { await kiln.stop() } }

        // An expression: a function of { env ? {} } gets the request's env as strings.
        let expression = """
            { env ? {} }:
            let bb = "${\(busybox.dropLast(8))}/busybox"; in
            derivation {
              name = "adhoc-\(marker)"; system = builtins.currentSystem; builder = bb;
              args = [ "sh" "-c" "${bb} mkdir $out; echo ${env.GREETING} > $out/greeting" ];
            }
            """
        let accepted = try await Self.submit(
            kiln, ["expression": expression, "service": "service-123", "env": ["GREETING": "hello-\(marker)"], "timeout": "40m"])
        #expect(accepted.status == 202, "\(accepted.body)")
        let id = try #require(accepted.json["build_id"] as? Int)
        #expect(accepted.json["url"] as? String == "http://kiln.test/builds/\(id)")
        #expect(accepted.json["source"] as? String == "expression")
        let build = try await Self.finished(kiln, id)
        #expect(build["state"] as? String == "succeeded", "\(build)")
        #expect(build["service"] as? String == "service-123")
        #expect(build["source"] as? String == "expression")
        #expect(try Self.output(build, "greeting") == "hello-\(marker)\n")
        let job = try #require((build["jobs"] as? [[String: Any]])?.first)
        #expect(job["name"] as? String == "build" && job["timeout_seconds"] as? Int == 2400)

        // Its service's statistics.
        let statistics = try await HTTPTestClient.send("GET", "\(kiln.url)/api/v1/statistics?service=service-123&window=1h").json
        #expect(statistics["builds"] as? [String: Int] == ["succeeded": 1])
        #expect(statistics["success_rate"] as? Double == 1 && statistics["artifacts"] as? Int == 1)
        let narSize = try #require((job["outputs"] as? [[String: Any]])?.first?["nar_size_bytes"] as? Int)
        #expect(statistics["average_artifact_bytes"] as? Double == Double(narSize))
        #expect((statistics["worker_utilisation"] as? [String: Any])?["slots"] as? Int == 2)
        #expect((try await HTTPTestClient.send("GET", "\(kiln.url)/api/v1/statistics?repository=octo/hello").json["builds"] as? [String: Int]) == [:])
        #expect(try await HTTPTestClient.send("GET", "\(kiln.url)/api/v1/statistics?service=a&repository=b").status == 400)

        // A parse error names its line and column; nothing is queued.
        let broken = try await Self.submit(kiln, ["expression": "{ env ? {} }:\nlet x = 1;\nin { a = x +; }"])
        #expect(broken.status == 400)
        #expect(broken.json["error"] as? String == "expression:3:13: syntax error, unexpected ';'", "\(broken.body)")
        // Only a control token may build.
        #expect(try await Self.submit(kiln, ["expression": expression], token: nil).status == 401)
        for (request, message) in [
            (["expression": expression, "git": ["url": "https://github.com/a/b.git"]] as [String: Any], "give exactly one of expression, git or template"),
            (["expression": expression, "timeout": "2h"], "timeout 2h is longer than this server's max-timeout, 1h"),
            (["expression": expression, "env": ["bad-name": "x"]], "env: 'bad-name' is not a variable name"),
            (["expression": expression, "colour": "red"], "unknown key 'colour'"),
            (["template": "missing"], "no template 'missing'"),
            (["expression": expression, "build-options": ["cores": 999]], "build-options.cores must be a whole number"),
        ] {
            let refused = try await Self.submit(kiln, request)
            #expect([400, 404].contains(refused.status) && (refused.json["error"] as? String ?? "").hasPrefix(message), "\(refused.body)")
        }

        // Templates: listed with their parameters, and built with the request's customizations.
        let templates = try await HTTPTestClient.send("GET", "\(kiln.url)/api/v1/templates").json["templates"] as? [[String: Any]]
        #expect(templates?.first?["name"] as? String == "hello")
        #expect((templates?.first?["parameters"] as? [[String: Any]])?.compactMap { $0["name"] as? String } == ["env", "name"])
        let templated = try await Self.submit(kiln, ["template": "hello", "customizations": ["env": ["PORT": "8080"], "name": "web"]])
        #expect(templated.status == 202, "\(templated.body)")
        let templateBuild = try await Self.finished(kiln, try #require(templated.json["build_id"] as? Int))
        #expect(try Self.output(templateBuild, "said") == "web:8080\n")

        // A running ad-hoc build is cancelled like any other.
        let slow = try await Self.submit(
            kiln,
            ["expression": "derivation { name = \"slow-\(marker)\"; system = builtins.currentSystem; builder = \"${\(busybox.dropLast(8))}/busybox\"; args = [ \"sleep\" \"600\" ]; }"])
        let slowID = try #require(slow.json["build_id"] as? Int)
        try await eventually("the slow build to run", within: .seconds(60)) { (try await kiln.build(slowID))["state"] as? String == "running" }
        let cancelled = try await HTTPTestClient.send(
            "POST", "\(kiln.url)/api/v1/builds/\(slowID)/cancel", headers: [("Authorization", "Bearer \(Self.adminToken)")])
        #expect(cancelled.status == 202 || cancelled.status == 200, "\(cancelled.body)")
        #expect(try await Self.finished(kiln, slowID)["state"] as? String == "cancelled")
    }

    @Test(.timeLimit(.minutes(3))) func gitBuildsFetchWithTheTokenAndSayWhatWentWrong() async throws {
        try await withTemporaryDirectory("kiln-adhoc-git") { served in
            let password = "git-token-\(UInt64.random(in: 1_000_000_000...9_999_999_999))"
            let server = try await GitHTTPServer(root: served.appending("served"), user: "x-access-token", password: password)
            defer { Task { await server.stop() } }
            let origin = try TestGitRepository(at: served.appending("served/app.git"))
            let marker = String(UInt64.random(in: 1_000_000_000...9_999_999_999))
            try TestFlake(packages: ["app": TestFlake.succeeding("from-git-\(marker)")]).write(to: origin.path)
            let sha = try origin.commit("an app")
            let (world, _) = try await Self.world(gitOrigins: [server.url, "http://127.0.0.1:1"])
            defer { Task { await world.close() } }
            try password.write(toFile: world.directory.appending("secrets/app-token"), atomically: true, encoding: .utf8)
            let kiln = try await KilnInstance.start(config: world.configPath)
            defer { Task { await kiln.stop() } }

            let url = "\(server.url)/app.git"
            let accepted = try await Self.submit(kiln, ["git": ["url": url, "branch": "main", "token-file": "app-token"], "build": ".#app"])
            #expect(accepted.status == 202, "\(accepted.body)")
            #expect(accepted.json["source"] as? String == "git \(url)#main at \(sha.prefix(7))")
            let build = try await Self.finished(kiln, try #require(accepted.json["build_id"] as? Int))
            #expect(build["state"] as? String == "succeeded", "\(build)")
            #expect(build["sha"] as? String == sha)
            #expect(try Self.output(build, "result") == "from-git-\(marker)\n")
            #expect(server.requests.allSatisfy { !$0.uri.contains(password) })

            for (request, status, message) in [
                (["git": ["url": url, "branch": "nope", "token": password], "build": ".#app"] as [String: Any], 422, "branch 'nope' is not in"),
                (["git": ["url": url, "token": "wrong"], "build": ".#app"], 422, "cannot fetch"),
                (["git": ["url": url], "build": ".#app"], 422, "cannot fetch"),
                (["git": ["url": "https://gitlab.example/a/b.git"], "build": ".#app"], 400, "git.url's host https://gitlab.example is not in build-service.git-hosts"),
                (["git": ["url": "https://me:pw@github.com/a/b.git"], "build": ".#app"], 400, "git.url must not hold credentials"),
                (["git": ["url": "-uhttps://github.com/a/b"], "build": ".#app"], 400, "git.url must not start with '-'"),
                (["git": ["url": "https://github.com/a/b.git"], "build": "/etc/passwd"], 400, "build:"),
                (["git": ["url": "https://github.com/a/b.git"]], 400, "build is required with git"),
            ] {
                let refused = try await Self.submit(kiln, request)
                #expect(refused.status == status && (refused.json["error"] as? String ?? "").hasPrefix(message), "\(refused.body)")
            }
            let wrongToken = try await Self.submit(kiln, ["git": ["url": url, "token": "wrong"], "build": ".#app"])
            #expect((wrongToken.json["error"] as? String ?? "").contains("check that git.token"), "\(wrongToken.body)")
            let noToken = try await Self.submit(kiln, ["git": ["url": url], "build": ".#app"])
            #expect((noToken.json["error"] as? String ?? "").contains("send git.token or git.token-file"), "\(noToken.body)")
            #expect(!wrongToken.body.contains(password))
            // An allowed server nothing listens on.
            let closed = try await Self.submit(kiln, ["git": ["url": "http://127.0.0.1:1/app.git"], "build": ".#app"])
            #expect(closed.status == 422 && (closed.json["error"] as? String ?? "").hasSuffix("check git.url and that this server can reach it"), "\(closed.body)")
        }
    }
}
