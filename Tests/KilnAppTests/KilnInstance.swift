import Foundation
import KilnApp
import KilnTesting
import Logging
import ServiceLifecycle

/// `kiln serve` running in the test process over real sockets, from a real configuration file.
struct KilnInstance {
    let group: ServiceGroup
    let task: Task<Void, any Error>
    let port: Int

    var url: String { "http://127.0.0.1:\(port)" }

    static func start(config path: String) async throws -> KilnInstance {
        var logger = Logger(label: "kiln-under-test")
        logger.logLevel = ProcessInfo.processInfo.environment["KILN_TEST_LOG"] != nil ? .debug : .critical
        let configuration = try KilnConfiguration.load(path: path)
        let (ports, continuation) = AsyncStream.makeStream(of: Int.self)
        let group = try await KilnServer.make(configuration, logger: logger) { port in
            continuation.yield(port)
            continuation.finish()
        }
        let task = Task { try await group.run() }
        guard let port = await ports.first(where: { _ in true }) else { throw TimedOut(what: "kiln to listen") }
        return KilnInstance(group: group, task: task, port: port)
    }

    func stop() async {
        await group.triggerGracefulShutdown()
        _ = try? await task.value
    }

    /// Posts a signed GitHub push for `sha` on `ref` of `repository`.
    func push(
        repository: String, ref: String = "refs/heads/main", sha: String, before: String? = nil, secret: String,
        delivery: String = UUID().uuidString
    ) async throws -> HTTPTestClient.Answer {
        let body = Payloads.githubPush(repository: repository, ref: ref, sha: sha, before: before)
        return try await HTTPTestClient.send(
            "POST", "\(url)/webhooks/github",
            headers: WebhookSigner.githubHeaders(event: "push", body: body, secret: secret, delivery: delivery), body: body)
    }

    /// The API's view of a build.
    func build(_ id: Int) async throws -> [String: Any] {
        try await HTTPTestClient.send("GET", "\(url)/api/v1/builds/\(id)").json
    }
}

/// Webhook payloads written from GitHub's documented format (our own, not copies of fixtures).
enum Payloads {
    static func githubPush(repository: String, ref: String, sha: String, before: String? = nil) -> [UInt8] {
        let owner = repository.split(separator: "/").first.map(String.init) ?? ""
        let json = """
            {
              "ref": "\(ref)",
              "before": "\(before ?? String(repeating: "0", count: 40))",
              "after": "\(sha)",
              "created": \(before == nil),
              "deleted": false,
              "forced": false,
              "base_ref": null,
              "compare": "https://github.com/\(repository)/compare/\(sha)",
              "commits": [],
              "head_commit": {"id": "\(sha)", "message": "test push", "timestamp": "2026-11-22T12:00:00Z"},
              "repository": {
                "id": 1296269,
                "name": "\(repository.split(separator: "/").last ?? "")",
                "full_name": "\(repository)",
                "private": false,
                "owner": {"login": "\(owner)", "id": 1},
                "clone_url": "https://github.com/\(repository).git",
                "created_at": 1700000000,
                "pushed_at": 1700000001,
                "default_branch": "main"
              },
              "pusher": {"name": "\(owner)", "email": "\(owner)@example.invalid"},
              "sender": {"login": "\(owner)", "id": 1}
            }
            """
        return Array(json.utf8)
    }
}

/// A scratch world for one end-to-end test: a git repository, secrets, a fake GitHub and a config file.
struct World {
    let directory: TemporaryDirectory
    let repository: TestGitRepository
    let github: FakeForge
    let configPath: String
    static let secret = "e2e-webhook-secret"
    static let token = "e2e-token"
    static let name = "octo/hello"

    static func make(maxBodyBytes: Int = 65536, statusAPI: String = "statuses") async throws -> World {
        let directory = try TemporaryDirectory("kiln-e2e")
        let repository = try TestGitRepository(at: directory.appending("origin"))
        let github = try await FakeForge(token: token, repositories: [name])
        try (secret + "\n").write(toFile: directory.appending("webhook-secret"), atomically: true, encoding: .utf8)
        try token.write(toFile: directory.appending("token"), atomically: true, encoding: .utf8)
        let config = """
            server:
              listen: 127.0.0.1:0
              public-url: http://kiln.test
              max-body-bytes: \(maxBodyBytes)
            storage:
              data-dir: data
            nix:
              max-parallel-jobs: 2
              options:
                substituters: ""
            forges:
              github:
                type: github
                api-url: \(github.url)
                webhook-secret-files: [webhook-secret]
                token-file: token
                status-api: \(statusAPI)
            repositories:
              - forge: github
                name: \(name)
                clone-url: file://\(repository.path)
            """
        try config.write(toFile: directory.appending("kiln.yaml"), atomically: true, encoding: .utf8)
        return World(directory: directory, repository: repository, github: github, configPath: directory.appending("kiln.yaml"))
    }

    func close() async {
        await github.stop()
        directory.remove()
    }
}

/// `kiln serve` as a process of its own (the binary built beside the tests), to be killed.
enum KilnProcess {
    static let kiln = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("kiln").path

    /// A port nothing listens on right now.
    static func freePort() throws -> Int {
        let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(descriptor) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(descriptor, $0, length) == 0 && getsockname(descriptor, $0, &length) == 0 }
        }
        return Int(UInt16(bigEndian: address.sin_port))
    }

    /// Starts `kiln serve` on `port` and waits until it answers.
    static func serve(_ world: World, port: Int) async throws -> Process {
        let config = try String(contentsOfFile: world.configPath, encoding: .utf8)
            .replacingOccurrences(of: "listen: 127.0.0.1:0", with: "listen: 127.0.0.1:\(port)")
        try config.write(toFile: world.configPath, atomically: true, encoding: .utf8)
        return try await serve(config: world.configPath, port: port)
    }

    /// Starts `kiln serve` with the configuration at `path`, which listens on `port`, and waits until it answers.
    static func serve(config path: String, port: Int) async throws -> Process {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: kiln)
        process.arguments = ["serve", "--config", path]
        process.standardOutput = FileHandle(forWritingAtPath: "/dev/null")
        process.standardError = FileHandle(forWritingAtPath: "/dev/null")
        try process.run()
        try await eventually("kiln to answer", within: .seconds(60)) {
            (try? await HTTPTestClient.send("GET", "http://127.0.0.1:\(port)/health")) != nil
        }
        return process
    }
}
