import Foundation

/// A real registry (Debian's docker-registry, the CNCF distribution) on 127.0.0.1, storing
/// images under a directory of the test's; optionally with htpasswd authentication.
public final class DockerRegistry: @unchecked Sendable {
    /// The port it listens on.
    public let port: Int
    /// `127.0.0.1:PORT`: the host images name.
    public var host: String { "127.0.0.1:\(port)" }
    /// A containers auth.json with the right credentials, when the registry has them.
    public let authFile: String?
    private var process: Process?
    private let directory: String

    /// Writes the registry's configuration under `directory` (a fresh port, or `port`); with
    /// `user`, only that user with `password` may push. `start()` starts it.
    public init(in directory: String, port: Int? = nil, user: String? = nil, password: String = "") throws {
        self.directory = directory
        try FileManager.default.createDirectory(atPath: directory + "/storage", withIntermediateDirectories: true)
        self.port = try port ?? NginxCache.freePort()
        var auth = ""
        if let user {
            // bcrypt, the only hash the registry accepts.
            let entry = try runCommand("/usr/bin/htpasswd", ["-Bbn", user, password])
            try entry.write(toFile: directory + "/htpasswd", atomically: true, encoding: .utf8)
            auth = "auth:\n  htpasswd:\n    realm: kiln-test\n    path: \(directory)/htpasswd\n"
            let encoded = Data("\(user):\(password)".utf8).base64EncodedString()
            authFile = directory + "/auth.json"
            try #"{"auths":{"127.0.0.1:\#(self.port)":{"auth":"\#(encoded)"}}}"#.write(toFile: authFile!, atomically: true, encoding: .utf8)
        } else {
            authFile = nil
        }
        let config = """
            version: 0.1
            log:
              level: warn
              accesslog:
                disabled: true
            storage:
              filesystem:
                rootdirectory: \(directory)/storage
              delete:
                enabled: true
            http:
              addr: 127.0.0.1:\(self.port)
              secret: kiln-test-secret
            \(auth)
            """
        try config.write(toFile: directory + "/config.yml", atomically: true, encoding: .utf8)
    }

    /// Starts the registry and waits until it answers `/v2/`.
    public func start() async throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/docker-registry")
        process.arguments = ["serve", directory + "/config.yml"]
        process.standardOutput = FileHandle(forWritingAtPath: "/dev/null")
        FileManager.default.createFile(atPath: directory + "/registry.log", contents: nil)
        process.standardError = FileHandle(forWritingAtPath: directory + "/registry.log")
        try process.run()
        self.process = process
        try await eventually("the registry at \(host) to answer", within: .seconds(20)) {
            guard let answer = try? await HTTPTestClient.send("GET", "http://\(host)/v2/") else { return false }
            return [200, 401].contains(answer.status)
        }
    }

    /// Stops the registry.
    public func stop() {
        guard let process, process.isRunning else { return }
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        self.process = nil
    }

    deinit { stop() }
}
