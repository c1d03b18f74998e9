import Foundation
import Synchronization

/// A throwaway PostgreSQL 15 from Debian's packages: `initdb` into a directory of its own under
/// /tmp, the server on a free loopback port (as the `postgres` user: PostgreSQL refuses root),
/// one fresh database per test. One server per test process, started by the first test that
/// asks and stopped when the process exits.
public final class PostgresServer: Sendable {
    /// The port it listens on, at 127.0.0.1.
    public let port: Int
    /// Its data directory.
    public let directory: String
    private static let started = Mutex<PostgresServer?>(nil)
    private static let starting = Mutex(false)
    /// The server's pid, for the exit handler (a C function pointer cannot capture).
    nonisolated(unsafe) private static var running: pid_t = 0
    nonisolated(unsafe) private static var runningDirectory = ""

    /// The process's server, started on first use: for tests, without waiting for the disk
    /// (`fsync=off`); `durable` (benchmarks, first caller decides) keeps PostgreSQL's defaults.
    public static func shared(durable: Bool = false) async throws -> PostgresServer {
        while true {
            if let server = started.withLock({ $0 }) { return server }
            let lead = starting.withLock { starting -> Bool in
                if starting { return false }
                starting = true
                return true
            }
            if lead {
                do {
                    let server = try await PostgresServer(durable: durable)
                    started.withLock { $0 = server }
                    return server
                } catch {
                    starting.withLock { $0 = false }
                    throw error
                }
            }
            try await Task.sleep(for: .milliseconds(50))
        }
    }

    /// PostgreSQL's programs (`/usr/lib/postgresql/VERSION/bin`), the newest installed.
    static func binaries() throws -> String {
        let root = "/usr/lib/postgresql"
        let versions = ((try? FileManager.default.contentsOfDirectory(atPath: root)) ?? []).compactMap(Int.init).sorted()
        guard let newest = versions.last, FileManager.default.isExecutableFile(atPath: "\(root)/\(newest)/bin/postgres") else {
            throw CommandFailed(arguments: ["postgres"], message: "PostgreSQL is not installed (make test installs Debian's postgresql)")
        }
        return "\(root)/\(newest)/bin"
    }

    /// Ends the servers of earlier test processes that died without their exit handler (killed,
    /// or a closed pipe), and removes their directories.
    static func removeOrphans() {
        for entry in (try? FileManager.default.contentsOfDirectory(atPath: "/tmp")) ?? [] where entry.hasPrefix("kiln-postgres-") {
            let directory = "/tmp/" + entry
            let pidText = (try? String(contentsOfFile: directory + "/data/postmaster.pid", encoding: .utf8))?.split(separator: "\n").first
            if let pid = pidText.flatMap({ pid_t($0) }), let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8) {
                // Fields after "(comm)": state, then the parent's pid; 1 once the test process is gone.
                let close = stat.lastIndex(of: ")") ?? stat.startIndex
                let parent = stat[stat.index(after: close)...].split(separator: " ").dropFirst().first
                guard parent == "1" else { continue }
                kill(pid, SIGQUIT)
                for _ in 0..<100 where FileManager.default.fileExists(atPath: "/proc/\(pid)") { usleep(20_000) }
            }
            try? FileManager.default.removeItem(atPath: directory)
        }
    }

    private init(durable: Bool) async throws {
        let bin = try Self.binaries()
        Self.removeOrphans()
        directory = "/tmp/kiln-postgres-" + UUID().uuidString.prefix(8).lowercased()
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        // On threads of their own (Processes.run): initdb takes seconds, which would stall the
        // few cooperative threads every other test needs.
        try await Self.check("/bin/chown", ["postgres:postgres", directory])
        try await Self.check(
            "/usr/bin/setpriv",
            ["--reuid=postgres", "--regid=postgres", "--init-groups", "\(bin)/initdb", "-D", directory + "/data", "-U", "postgres",
             "--auth=trust", "-E", "UTF8", "--no-sync", "--no-instructions"])
        port = try NginxCache.freePort()
        // Not through Foundation's Process, which loses track of children that close what they inherit.
        let arguments = [
            "/usr/bin/setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", "\(bin)/postgres", "-D", directory + "/data",
            "-p", String(port), "-k", directory, "-h", "127.0.0.1", "-c", "max_connections=200", "-c", "logging_collector=off",
        ] + (durable ? [] : ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"])
        var argv = arguments.map { strdup($0) } + [nil]
        defer { for argument in argv { free(argument) } }
        var fileActions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&fileActions)
        defer { posix_spawn_file_actions_destroy(&fileActions) }
        posix_spawn_file_actions_addopen(&fileActions, 1, directory + "/server.log", O_WRONLY | O_CREAT | O_APPEND, 0o644)
        posix_spawn_file_actions_addopen(&fileActions, 2, directory + "/server.log", O_WRONLY | O_CREAT | O_APPEND, 0o644)
        // Nothing else the test process has open: a pipe of another test's child, inherited by
        // a server that outlives it, would never reach its end, and that test would wait for good.
        Processes.closeInheritedDescriptors(&fileActions)
        var child: pid_t = 0
        let status = posix_spawn(&child, arguments[0], &fileActions, nil, &argv, environ)
        guard status == 0 else { throw CommandFailed(arguments: arguments, message: String(cString: strerror(status))) }
        Self.running = child
        Self.runningDirectory = directory
        atexit {
            guard PostgresServer.running > 0 else { return }
            kill(PostgresServer.running, SIGQUIT)
            var status: Int32 = 0
            _ = waitpid(PostgresServer.running, &status, 0)
            try? FileManager.default.removeItem(atPath: PostgresServer.runningDirectory)
        }
        let port = self.port
        try await eventually("PostgreSQL on port \(port) to accept connections", within: .seconds(30)) {
            (try? await Processes.run("\(bin)/pg_isready", ["-h", "127.0.0.1", "-p", String(port), "-U", "postgres"]))?.status == 0
        }
    }

    /// A new, empty database; returns its name.
    public func newDatabase() async throws -> String {
        let name = "kiln_" + UUID().uuidString.replacingOccurrences(of: "-", with: "").prefix(16).lowercased()
        try await psql("CREATE DATABASE \(name)")
        return name
    }

    /// Runs one statement as `postgres` in database `database`.
    public func psql(_ statement: String, database: String = "postgres") async throws {
        try await Self.check(
            "/usr/bin/psql", ["-h", "127.0.0.1", "-p", String(port), "-U", "postgres", "-d", database, "-v", "ON_ERROR_STOP=1", "-q", "-c", statement])
    }

    /// Runs a program to its end on a thread of its own; throws with its output when it fails.
    private static func check(_ executable: String, _ arguments: [String]) async throws {
        let (status, output) = try await Processes.run(executable, arguments)
        guard status == 0 else { throw CommandFailed(arguments: [executable] + arguments, message: output) }
    }

    /// What the server logged.
    public var log: String { (try? String(contentsOfFile: directory + "/server.log", encoding: .utf8)) ?? "" }
}
