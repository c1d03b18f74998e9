import Crypto
import Foundation
import GRDB
import Hummingbird
import HummingbirdCore
import KilnApp
import KilnCore
import KilnHTTP
import KilnTesting
import Logging
import NIOCore
import ServiceLifecycle

/// `intake`: signed pushes at 32 connections for `seconds`, with wrk (Debian's `wrk`), against
/// `kiln serve`'s webhook route (verify, decode, durable commit) and against a bare Hummingbird
/// route that reads the body and verifies the same HMAC and nothing else, side by side.
enum IntakeLoad {
    struct Figures {
        /// Requests answered with a 2xx.
        var requests: Int
        var requestsPerSecond: Double
        /// CPU time of this process (the server under test) per request answered 2xx: steadier
        /// than the rates on a machine whose speed drifts between runs.
        var cpuPerRequest: Duration
        var p50: String
        var p99: String
        var errors: String
    }

    /// Never ready: the worker plans nothing, so only intake is measured.
    struct IdleExecutor: Executor {
        func readiness() async -> Readiness { .notReady("benchmark: intake only") }
        func run(_ job: JobRun, log: any LogSink, stop: StopSignal) async -> JobReport { JobReport(outcome: .succeeded, duration: .zero) }
        func evaluate(_ request: EvaluationRequest, log: any LogSink, stop: StopSignal) async -> EvaluationReport {
            EvaluationReport(results: [:], summary: "idle", duration: .zero)
        }
        func endLeftoverProcesses() async -> Int { 0 }
    }

    static let secret = "bench-secret"
    static let body = Array("""
        {"ref":"refs/heads/main","before":"0000000000000000000000000000000000000000","after":"\(String(repeating: "a", count: 40))","created":false,"deleted":false,"forced":false,"commits":[],"head_commit":{"id":"\(String(repeating: "a", count: 40))","message":"load"},"repository":{"id":1,"name":"hello","full_name":"bench/hello","owner":{"login":"bench"}},"pusher":{"name":"bench"},"sender":{"login":"bench"}}
        """.utf8)

    static func run(seconds: Int) async throws {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/wrk") else {
            print("[intake] skipped: wrk is not installed (apt-get install wrk)")
            return
        }
        let directory = try TemporaryDirectory("kiln-bench-intake")
        defer { directory.remove() }
        let script = directory.appending("push.lua")
        try luaScript().write(toFile: script, atomically: true, encoding: .utf8)

        // Alternating rounds: this machine's speed drifts, and one pair of runs can land on either
        // side of a drift. The figure is the median round's.
        var rounds: [(bare: Figures, kiln: Figures)] = []
        for round in 1...max(1, Int(ProcessInfo.processInfo.environment["KILN_BENCH_INTAKE_ROUNDS"] ?? "3") ?? 3) {
            let bare = try await bareRoute()
            let bareFigures = try wrk(port: bare.port, script: script, seconds: seconds)
            await bare.stop()
            let kiln = try await Serving.start(in: directory, data: "data-\(round)")
            let kilnFigures = try wrk(port: kiln.port, script: script, seconds: seconds)
            await kiln.stop()
            try expectOneDeliveryEach(kilnFigures, recordedIn: directory.appending("data-\(round)/kiln.sqlite"))
            rounds.append((bareFigures, kilnFigures))
        }

        // The same on PostgreSQL 15 (fsync and synchronous commit on, as shipped), on loopback.
        let postgres = try await PostgresServer.shared(durable: true)
        let onPostgres = try await Serving.start(
            in: directory, database: "postgres://postgres@127.0.0.1:\(postgres.port)/\(try await postgres.newDatabase())", data: "data-pg")
        let postgresFigures = try wrk(port: onPostgres.port, script: script, seconds: seconds)
        await onPostgres.stop()

        func line(_ label: String, _ figures: Figures) -> String {
            String(format: "%@ %8.0f requests/s, p50 %@, p99 %@, server CPU %.1f µs/request%@", label.padding(toLength: 44, withPad: " ", startingAt: 0),
                figures.requestsPerSecond, figures.p50, figures.p99, milliseconds(figures.cpuPerRequest) * 1000,
                figures.errors.isEmpty ? "" : " (\(figures.errors))")
        }
        func ratio(_ round: (bare: Figures, kiln: Figures)) -> Double { round.kiln.requestsPerSecond / round.bare.requestsPerSecond }
        print("[intake] 32 connections, \(seconds) s each, signed \(body.count)-byte GitHub pushes, each under a new delivery id")
        for (index, round) in rounds.enumerated() {
            print("[intake] round \(index + 1): " + line("bare Hummingbird route (read + HMAC)", round.bare))
            print("[intake] round \(index + 1): " + line("kiln serve /webhooks/github (durable)", round.kiln))
            print(String(format: "[intake] round %d: kiln / bare: %.2f", index + 1, ratio(round)))
        }
        let median = rounds.sorted { ratio($0) < ratio($1) }[rounds.count / 2]
        print(String(format: "[intake] kiln / bare (median of %d rounds): %.2f, kiln p99 %@", rounds.count, ratio(median), median.kiln.p99))
        print(String(format: "[intake] server CPU per request in that round, kiln / bare: %.2f",
            milliseconds(median.kiln.cpuPerRequest) / milliseconds(median.bare.cpuPerRequest)))
        print("[intake] " + line("kiln serve on PostgreSQL 15 (loopback)", postgresFigures))
        print(String(format: "[intake] PostgreSQL / SQLite: %.2f", postgresFigures.requestsPerSecond / median.kiln.requestsPerSecond))
    }

    /// wrk's script: the same body and signature, a new delivery id on every request.
    static func luaScript() -> String {
        let signature = "sha256=" + HMAC<SHA256>.authenticationCode(for: body, using: SymmetricKey(data: Array(secret.utf8)))
            .map { String(format: "%02x", $0) }.joined()
        return """
            -- thread:set sets a global of the thread's script: thread_id must not be a local,
            -- or every thread would send the same ids and half the pushes would be redeliveries.
            local counter = 0
            thread_id = 0
            local threads = 0
            function setup(thread)
              thread:set("thread_id", threads)
              threads = threads + 1
            end
            wrk.method = "POST"
            wrk.body = [==[\(String(decoding: body, as: UTF8.self))]==]
            wrk.headers["Content-Type"] = "application/json"
            wrk.headers["X-GitHub-Event"] = "push"
            wrk.headers["X-Hub-Signature-256"] = "\(signature)"
            function request()
              counter = counter + 1
              wrk.headers["X-GitHub-Delivery"] = "load-" .. thread_id .. "-" .. counter
              return wrk.format(nil, "/webhooks/github")
            end
            """
    }

    /// Every answered push was a new delivery: the figure is of builds made, not of redeliveries
    /// found (the script once sent each id twice).
    static func expectOneDeliveryEach(_ figures: Figures, recordedIn database: String) throws {
        var configuration = Configuration()
        configuration.readonly = true
        let recorded = try DatabaseQueue(path: database, configuration: configuration).read { db in
            try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM deliveries") ?? 0
        }
        guard recorded >= figures.requests else {
            throw BenchFailure("intake: \(figures.requests) pushes answered but only \(recorded) deliveries recorded; the script repeats delivery ids")
        }
    }

    struct BenchFailure: Error, CustomStringConvertible {
        let description: String
        init(_ description: String) { self.description = description }
    }

    /// Runs wrk and reads its figures.
    static func wrk(port: Int, script: String, seconds: Int) throws -> Figures {
        let cpuBefore = processCPUTime()
        let output = try runCommand(
            "/usr/bin/wrk", ["-t", "2", "-c", "32", "-d", "\(seconds)s", "--latency", "-s", script, "http://127.0.0.1:\(port)"])
        func field(after prefix: String) -> String? {
            output.split(separator: "\n").first { $0.trimmingCharacters(in: .whitespaces).hasPrefix(prefix) }
                .map { $0.trimmingCharacters(in: .whitespaces).dropFirst(prefix.count).trimmingCharacters(in: .whitespaces) }
        }
        let rate = field(after: "Requests/sec:").flatMap(Double.init) ?? 0
        let errors = output.split(separator: "\n").filter { $0.contains("Non-2xx") || $0.contains("Socket errors") }
            .map { $0.trimmingCharacters(in: .whitespaces) }.joined(separator: "; ")
        // Answered with a 2xx: all requests ("N requests in 10.00s, …") but the non-2xx ones.
        let all = output.split(separator: "\n").first { $0.contains(" requests in ") }
            .flatMap { Int($0.split(separator: " ").first ?? "") } ?? 0
        let requests = all - (field(after: "Non-2xx or 3xx responses:").flatMap { Int($0) } ?? 0)
        let cpu = processCPUTime() - cpuBefore
        return Figures(
            requests: requests, requestsPerSecond: rate, cpuPerRequest: requests > 0 ? cpu / requests : .zero, p50: field(after: "50%") ?? "?", p99: field(after: "99%") ?? "?", errors: errors)
    }

    /// User and system CPU time of this process so far.
    static func processCPUTime() -> Duration {
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        func duration(_ time: timeval) -> Duration { .seconds(time.tv_sec) + .microseconds(time.tv_usec) }
        return duration(usage.ru_utime) + duration(usage.ru_stime)
    }

    /// The bare route: read the body, check the HMAC, answer 202.
    static func bareRoute() async throws -> (port: Int, stop: @Sendable () async -> Void) {
        let key = SymmetricKey(data: Array(secret.utf8))
        let router = Router()
        router.post("/webhooks/github") { request, _ -> Response in
            var request = request
            let body = try await request.collectBody(upTo: 26_214_400)
            let header = request.headers.first { $0.name.rawName.lowercased() == "x-hub-signature-256" }?.value ?? ""
            guard header.hasPrefix("sha256="),
                let mac = hex(header.dropFirst(7)),
                HMAC<SHA256>.isValidAuthenticationCode(mac, authenticating: Array(buffer: body), using: key)
            else { return Response(status: .unauthorized) }
            return Response(status: .accepted)
        }
        let server = try await TestHTTPServer.start(router: router, server: .onEventLoops { HTTP1Channel(responder: $0) })
        return (server.port, { await server.stop() })
    }

    static func hex(_ text: Substring) -> [UInt8]? {
        let digits = Array(text.utf8)
        guard digits.count == 64 else { return nil }
        var bytes: [UInt8] = []
        for index in stride(from: 0, to: 64, by: 2) {
            guard let byte = UInt8(String(decoding: digits[index...index + 1], as: UTF8.self), radix: 16) else { return nil }
            bytes.append(byte)
        }
        return bytes
    }
}

/// `kiln serve` for intake benchmarks: one GitHub repository, statuses recorded only, and an
/// executor that is never ready, so only intake (and what reads its records) runs.
struct Serving {
    let group: ServiceGroup
    let server: Task<Void, any Error>
    let port: Int

    static func start(in directory: TemporaryDirectory, database: String? = nil, data: String = "data") async throws -> Serving {
        try IntakeLoad.secret.write(toFile: directory.appending("secret"), atomically: true, encoding: .utf8)
        try """
            server: {listen: "127.0.0.1:0", public-url: "http://kiln.bench", max-concurrent-webhooks: 256}
            storage: {data-dir: \(data)\(database.map { ", database: \"\($0)\"" } ?? "")}
            forges:
              github: {type: github, webhook-secret-files: [secret], status-api: none}
            repositories:
              - {forge: github, name: bench/hello, clone-url: "file:///nowhere"}
            """.write(toFile: directory.appending("kiln.yaml"), atomically: true, encoding: .utf8)
        let logger = Logger(label: "bench", factory: { _ in SwiftLogNoOpLogHandler() })
        let configuration = try KilnConfiguration.load(path: directory.appending("kiln.yaml"))
        let (ports, continuation) = AsyncStream.makeStream(of: Int.self)
        let group = try await KilnServer.make(configuration, logger: logger, executor: IntakeLoad.IdleExecutor()) { port in
            continuation.yield(port)
            continuation.finish()
        }
        let server = Task { try await group.run() }
        return Serving(group: group, server: server, port: await ports.first { _ in true }!)
    }

    func stop() async {
        await group.triggerGracefulShutdown()
        _ = try? await server.value
    }
}
