import Foundation
import KilnCore
import KilnPipeline
import Subprocess
import Synchronization

#if canImport(System)
    import System
#else
    import SystemPackage
#endif

/// The build settings a nix-daemon client states before each build (`wopSetOptions`). The
/// daemon takes them as they are sent, so Kiln sends what nix itself has (`HostInfo`), with the
/// job's silence limit.
struct DaemonBuildSettings: Sendable, Hashable {
    var keepFailed = false
    var keepGoing = false
    var fallback = false
    var maxJobs: UInt64 = 1
    var cores: UInt64 = 0
    var substitute = true

    /// Settings the request carries in fields of their own (or that the daemon ignores), left
    /// out of its overrides as nix's own client leaves them out: an override would replace the
    /// field, the job's silence limit among them.
    static let fieldNames: Set<String> = [
        "keep-failed", "keep-going", "fallback", "max-jobs", "max-silent-time", "cores", "substitute", "show-trace",
        "experimental-features",
    ]
}

/// How nix-daemon reports one requested derivation (`BuildResult`).
struct DaemonBuildResult: Sendable, Equatable {
    /// nix's `BuildResult::Status`: 0 built, 1 substituted, 2 already valid, 3 the builder
    /// failed, 5 output rejected, 8 timed out, 10 a dependency failed, 13 resolved to a valid
    /// path (content-addressed), …
    var status: UInt64
    var errorMessage: String
    /// For a failed dependency (10): nix said, during the request, that a build timed out.
    /// nix answers only for the derivations asked for, and `nix-store` takes the timeout from
    /// nix's own record of every build it ran.
    var dependencyTimedOut = false

    var succeeded: Bool { status <= 2 || status == 13 }

    /// The exit code `nix-store --realise` gives for these results (its `Worker::exitStatus`):
    /// 0x60 with 0x04 for a failed build, 0x01 for a timeout, 0x02 for a rejected output, 0x08
    /// for a non-deterministic one; 1 for any other failure.
    static func exitCode(_ results: [DaemonBuildResult]) -> Int32 {
        var mask: Int32 = 0
        for result in results {
            switch result.status {
            case 3, 7: mask |= 0x04
            case 10: mask |= result.dependencyTimedOut ? 0x04 | 0x01 : 0x04
            case 4, 5: mask |= 0x04 | 0x02
            case 8: mask |= 0x04 | 0x01
            case 12: mask |= 0x08
            default: break
            }
        }
        if mask != 0 { return 0x60 | mask }
        return results.allSatisfy(\.succeeded) ? 0 : 1
    }
}

/// A failure of the conversation with nix-daemon (not of a build).
struct DaemonError: Error, CustomStringConvertible {
    var description: String
    /// Whether it is nix's own error, which the daemon answered with (the daemon lives on).
    var fromDaemon = false
}

/// One `nix-daemon --stdio`, kept between jobs: each job's derivations are built by a request to
/// it (`wopBuildPathsWithResults`) instead of a `nix-store --realise` of its own, whose start
/// (loading nix's libraries) cost each job 20 ms of CPU. nix's log comes in the same stream,
/// in order, and is handed on as `--log-format internal-json` lines, so a job's log reads the
/// same either way. One build at a time.
final class NixDaemonConnection: Sendable {
    let pid: pid_t
    /// The daemon's private home; its `tmp` is where builds run.
    let home: String
    private let requests: AsyncStream<Request>.Continuation
    private let state: Mutex<State>
    private let ended: Mutex<CheckedContinuation<Void, Never>?>

    private struct State {
        var lastMessage = ContinuousClock.now
        var usable = true
        var builds = 0
        var idleSince: ContinuousClock.Instant?
        var exited = false
    }

    private struct Request: Sendable {
        var paths: [String]
        var settings: DaemonBuildSettings
        var maxSilentSeconds: UInt64
        var line: @Sendable (ArraySlice<UInt8>) -> Void
        var reply: CheckedContinuation<[DaemonBuildResult], any Error>
    }

    private init(pid: pid_t, home: String, requests: AsyncStream<Request>.Continuation) {
        self.pid = pid
        self.home = home
        self.requests = requests
        self.state = Mutex(State())
        self.ended = Mutex(nil)
    }

    /// Starts `daemon --stdio` with `arguments` (nix's options) in `environment`, its home
    /// `home` (removed when it ends), and exchanges greetings. The daemon dies with Kiln.
    static func start(
        _ daemon: String, arguments: [String], overrides: [(name: String, value: String)] = [], home: String,
        environment: [String: String], greetingLimit: Duration = .seconds(30)
    ) async throws -> NixDaemonConnection {
        let overrides = overrides.filter { !DaemonBuildSettings.fieldNames.contains($0.name) }
        let (stream, continuation) = AsyncStream.makeStream(of: Request.self)
        let started = Locked<CheckedContinuation<NixDaemonConnection, any Error>?>(nil)
        let connection = Locked<NixDaemonConnection?>(nil)
        let (launcher, launchArguments) = ParentDeath.wrap(daemon, ["--stdio"] + arguments)
        return try await withCheckedThrowingContinuation { reply in
            started.withLock { $0 = reply }
            Task.detached {
                var options = PlatformOptions()
                options.processGroupID = 0
                options.teardownSequence = [.send(signal: .interrupt, toProcessGroup: true, allowedDurationToNextStep: .seconds(2))]
                do {
                    _ = try await withTaskExecutorPreference(SpawnThread.shared) {
                        try await Subprocess.run(
                            .path(FilePath(launcher)), arguments: Arguments(launchArguments),
                            environment: ScrubbedEnvironment.subprocess(environment), workingDirectory: FilePath(home),
                            platformOptions: options, input: .inputWriter, output: .sequence, error: .discarded
                        ) { execution in
                            try await withTaskExecutorPreference(globalConcurrentExecutor) {
                                let opened = NixDaemonConnection(
                                    pid: execution.processIdentifier.value, home: home, requests: continuation)
                                connection.withLock { $0 = opened }
                                var wire = DaemonWire(execution.standardOutput.makeAsyncIterator()) {
                                    opened.state.withLock { $0.lastMessage = .now }
                                }
                                let writer = execution.standardInputWriter
                                // A daemon that does not greet in time is ended, and the job builds without it.
                                // Only the greeting is timed: whichever of it and the timer settles first decides,
                                // so a daemon that greeted is never killed by the timer, however late it fires.
                                let pid = opened.pid
                                let greeted = Locked<Bool?>(nil)
                                @Sendable func settle(_ value: Bool) -> Bool {
                                    greeted.withLock { state in
                                        guard state == nil else { return false }
                                        state = value
                                        return true
                                    }
                                }
                                let greeting = Task {
                                    try await Task.sleep(for: greetingLimit)
                                    if settle(false) { kill(-pid, SIGKILL) }
                                }
                                defer { greeting.cancel() }
                                let tooLate = DaemonError(description: "nix-daemon did not greet within \(HumanDuration.format(greetingLimit))")
                                do {
                                    try await Self.greet(&wire, writer)
                                } catch where greeted.withLock({ $0 }) == false {
                                    throw tooLate
                                }
                                guard settle(true) else { throw tooLate }
                                started.withLock { $0.take() }?.resume(returning: opened)
                                for await request in stream {
                                    do {
                                        let results = try await Self.build(request, overrides: overrides, &wire, writer)
                                        request.reply.resume(returning: results)
                                    } catch {
                                        opened.state.withLock { $0.usable = false }
                                        request.reply.resume(throwing: error)
                                        break
                                    }
                                }
                                try? await writer.finish()
                            }
                        }
                    }
                } catch {
                    started.withLock { $0.take() }?.resume(throwing: error)
                }
                // The daemon has ended (and been reaped): nothing it built is kept in its home.
                continuation.finish()
                for await request in stream { request.reply.resume(throwing: DaemonError(description: "nix-daemon ended")) }
                try? FileManager.default.removeItem(atPath: home)
                connection.withLock { $0 }?.markExited()
            }
        }
    }

    /// Builds `paths` (`drv!out,…`) with nix's `settings` and a silence limit; each log line goes
    /// to `line`, in order, before this returns. Throws when the conversation fails (the daemon
    /// was killed, or answered with an error): the connection is then not used again.
    func build(
        _ paths: [String], settings: DaemonBuildSettings, maxSilentSeconds: UInt64,
        line: @escaping @Sendable (ArraySlice<UInt8>) -> Void
    ) async throws -> [DaemonBuildResult] {
        state.withLock {
            $0.builds += 1
            $0.idleSince = nil
            $0.lastMessage = .now
        }
        return try await withCheckedThrowingContinuation { reply in
            let request = Request(paths: paths, settings: settings, maxSilentSeconds: maxSilentSeconds, line: line, reply: reply)
            if case .terminated = requests.yield(request) {
                reply.resume(throwing: DaemonError(description: "nix-daemon ended"))
            }
        }
    }

    /// When the daemon last said anything.
    var lastMessage: ContinuousClock.Instant { state.withLock { $0.lastMessage } }

    /// Whether it may build again: it has not failed, and it still runs (one that died while
    /// idle is known only here: nothing reads from it between builds).
    var usable: Bool { state.withLock { $0.usable && !$0.exited } && ProcessTree.isAlive(pid) }

    /// How many builds it was asked for.
    var builds: Int { state.withLock { $0.builds } }

    /// Marks it idle now, and returns the mark.
    func markIdle() -> ContinuousClock.Instant {
        let now = ContinuousClock.now
        state.withLock { $0.idleSince = now }
        return now
    }

    /// Whether it has been idle since `mark` without building.
    func idle(since mark: ContinuousClock.Instant) -> Bool { state.withLock { $0.idleSince == mark } }

    /// Lets the daemon go: it ends when its standard input closes.
    func close() {
        state.withLock { $0.usable = false }
        requests.finish()
    }

    /// Closes it and waits until the daemon has ended and its home is gone.
    func closeAndWait() async {
        close()
        await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
            let exited = state.withLock { state -> Bool in
                if state.exited { return true }
                ended.withLock { $0 = done }
                return false
            }
            if exited { done.resume() }
        }
    }

    private func markExited() {
        state.withLock {
            $0.exited = true
            $0.usable = false
        }
        ended.withLock { $0.take() }?.resume()
    }

    // MARK: The worker protocol (nix 2.8, protocol 1.34)

    private static let clientVersion: UInt64 = 0x122

    private static func greet(_ wire: inout DaemonWire, _ writer: StandardInputWriter) async throws {
        var hello = DaemonMessage()
        hello.number(0x6e69_7863)
        _ = try await writer.write(hello.bytes)
        guard try await wire.number() == 0x6478_696f else { throw DaemonError(description: "nix-daemon did not greet") }
        let version = try await wire.number()
        guard version >> 8 == 1, version & 0xFF >= 34 else {
            throw DaemonError(description: "nix-daemon speaks protocol \(version >> 8).\(version & 0xFF); Kiln needs 1.34")
        }
        var answer = DaemonMessage()
        answer.number(clientVersion)
        answer.number(0)  // no CPU affinity
        answer.number(0)  // reserve space (obsolete)
        _ = try await writer.write(answer.bytes)
        _ = try await wire.string()  // nix's version
        try await wire.work { _ in }
    }

    private static func build(
        _ request: Request, overrides: [(name: String, value: String)], _ wire: inout DaemonWire, _ writer: StandardInputWriter
    ) async throws -> [DaemonBuildResult] {
        let settings = request.settings
        var message = DaemonMessage()
        message.number(19)  // wopSetOptions
        for value: UInt64 in [
            settings.keepFailed ? 1 : 0, settings.keepGoing ? 1 : 0, settings.fallback ? 1 : 0,
            3,  // verbosity: info, as nix's own commands log
            settings.maxJobs, request.maxSilentSeconds,
            1,  // use the build hook (obsolete)
            0,  // verbose build: the builder's output comes as log lines
            0, 0,  // log type, print build trace (obsolete)
            settings.cores, settings.substitute ? 1 : 0,
        ] {
            message.number(value)
        }
        // Kiln's options again, as nix's own client sends them: `nix-daemon --stdio` on a store
        // that a system daemon owns only relays to it, and its command line reaches nothing.
        message.number(UInt64(overrides.count))
        for (name, value) in overrides {
            message.string(name)
            message.string(value)
        }
        _ = try await writer.write(message.bytes)
        try await wire.work(request.line)
        var build = DaemonMessage()
        build.number(46)  // wopBuildPathsWithResults
        build.number(UInt64(request.paths.count))
        for path in request.paths { build.string(path) }
        build.number(0)  // normal build mode
        _ = try await writer.write(build.bytes)
        wire.heardTimeout = false
        try await wire.work(request.line)
        var results: [DaemonBuildResult] = []
        let count = try await wire.number()
        guard count <= 100_000 else { throw DaemonError(description: "nix-daemon sent \(count) results") }
        for _ in 0..<count {
            _ = try await wire.string()  // the requested path (results come in nix's order, not the order asked)
            let status = try await wire.number()
            let error = try await wire.string()
            _ = try await wire.number()  // times built
            _ = try await wire.number()  // non-deterministic
            _ = try await wire.number()  // start time
            _ = try await wire.number()  // stop time
            let outputs = try await wire.number()
            guard outputs <= 10_000 else { throw DaemonError(description: "nix-daemon sent \(outputs) outputs") }
            for _ in 0..<outputs {
                _ = try await wire.string()  // output id
                _ = try await wire.string()  // realisation
            }
            results.append(DaemonBuildResult(status: status, errorMessage: error, dependencyTimedOut: status == 10 && wire.heardTimeout))
        }
        return results
    }
}

/// A message to nix-daemon: little-endian 64-bit numbers and padded strings.
struct DaemonMessage {
    private(set) var bytes: [UInt8] = []

    mutating func number(_ value: UInt64) {
        withUnsafeBytes(of: value.littleEndian) { bytes += $0 }
    }

    mutating func string(_ value: String) {
        let utf8 = Array(value.utf8)
        number(UInt64(utf8.count))
        bytes += utf8
        bytes += [UInt8](repeating: 0, count: (8 - utf8.count % 8) % 8)
    }
}

/// What nix-daemon sends: replies, and the log messages that come before each reply.
struct DaemonWire {
    private var iterator: SubprocessOutputSequence.AsyncIterator
    private var buffer: [UInt8] = []
    private var offset = 0
    private let heard: @Sendable () -> Void
    /// Whether nix said that a build timed out since this was last reset (its message for a
    /// dependency it stopped: "building of '…' … timed out after N seconds[ of silence]").
    var heardTimeout = false

    /// The longest string Kiln reads from the daemon (a log line, an error).
    static let stringCap: UInt64 = 16 << 20

    init(_ iterator: SubprocessOutputSequence.AsyncIterator, heard: @escaping @Sendable () -> Void) {
        self.iterator = iterator
        self.heard = heard
    }

    mutating func number() async throws -> UInt64 {
        let bytes = try await take(8)
        return bytes.enumerated().reduce(0) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) }
    }

    mutating func string() async throws -> String {
        let count = try await number()
        guard count <= Self.stringCap else { throw DaemonError(description: "nix-daemon sent a string of \(count) bytes") }
        let bytes = try await take(Int(count))
        _ = try await take(Int((8 - count % 8) % 8))
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Reads log messages until the daemon's "last" (its reply follows), handing each on to
    /// `line` as a `--log-format internal-json` line. An error message ends the work with it.
    mutating func work(_ line: @Sendable (ArraySlice<UInt8>) -> Void) async throws {
        while true {
            switch try await number() {
            case 0x616c_7473:  // last
                return
            case 0x6f6c_6d67:  // next: a log message, already formatted
                let text = try await string()
                if text.contains("building of '"), text.contains(" timed out after ") { heardTimeout = true }
                for part in text.split(separator: "\n", omittingEmptySubsequences: false) where !part.isEmpty {
                    line(Self.message(String(part)))
                }
            case 0x5354_5254:  // start activity
                let id = try await number()
                let level = try await number()
                let type = try await number()
                let text = try await string()
                let fields = try await fields()
                _ = try await number()  // parent
                line(Self.json(["action": "start", "id": id, "level": level, "type": type, "text": text, "fields": fields]))
            case 0x5354_4f50:  // stop activity
                let id = try await number()
                line(Self.json(["action": "stop", "id": id]))
            case 0x5253_4c54:  // result
                let id = try await number()
                let type = try await number()
                let fields = try await fields()
                line(Self.json(["action": "result", "id": id, "type": type, "fields": fields]))
            case 0x6378_7470:  // error
                _ = try await string()  // "Error"
                _ = try await number()  // level
                _ = try await string()  // name
                let message = try await string()
                _ = try await number()  // position (none)
                let traces = try await number()
                guard traces <= 10_000 else { throw DaemonError(description: "nix-daemon sent \(traces) traces") }
                for _ in 0..<traces {
                    _ = try await number()
                    _ = try await string()
                }
                throw DaemonError(description: message, fromDaemon: true)
            case let other:
                throw DaemonError(description: String(format: "nix-daemon sent an unknown message 0x%llx", other))
            }
        }
    }

    private mutating func fields() async throws -> [Any] {
        let count = try await number()
        guard count <= 1_000 else { throw DaemonError(description: "nix-daemon sent \(count) fields") }
        var fields: [Any] = []
        for _ in 0..<count {
            switch try await number() {
            case 0: fields.append(try await number())
            case 1: fields.append(try await string())
            case let type: throw DaemonError(description: "nix-daemon sent a field of type \(type)")
            }
        }
        return fields
    }

    /// nix's message `text`, as a `--log-format internal-json` line.
    static func message(_ text: String) -> ArraySlice<UInt8> { json(["action": "msg", "level": 0, "msg": text]) }

    private static func json(_ object: [String: Any]) -> ArraySlice<UInt8> {
        let data = (try? JSONSerialization.data(withJSONObject: object)) ?? Data("{}".utf8)
        return ArraySlice(Array("@nix ".utf8) + Array(data))
    }

    private mutating func take(_ count: Int) async throws -> [UInt8] {
        while buffer.count - offset < count {
            guard let chunk = try await iterator.next() else { throw DaemonError(description: "nix-daemon closed its output") }
            heard()
            if offset > 0 {
                buffer.removeFirst(offset)
                offset = 0
            }
            buffer += chunk.withUnsafeBytes { Array($0) }
        }
        let bytes = Array(buffer[offset..<offset + count])
        offset += count
        return bytes
    }
}

/// The daemons jobs build with, kept while jobs keep coming: one per job building at once. A
/// daemon idle for `idleLimit`, or after `buildLimit` builds, is let go (a live nix keeps what it
/// built from the garbage collector).
final class NixDaemonPool: Sendable {
    private let idle = Mutex<[NixDaemonConnection]>([])
    let idleLimit: Duration
    let buildLimit: Int

    init(idleLimit: Duration = .seconds(10), buildLimit: Int = 500) {
        self.idleLimit = idleLimit
        self.buildLimit = buildLimit
    }

    /// Starts that failed in a row; after `startLimit` of them no more are tried (a nix whose
    /// daemon does not speak Kiln's protocol would cost every job a failed start).
    private let failedStarts = Mutex(0)
    static let startLimit = 3

    /// An idle daemon, or one `start` starts, or why there is none (the job then builds with
    /// nix-store).
    func take(start: () async -> Result<NixDaemonConnection, DaemonError>) async -> Result<NixDaemonConnection, DaemonError> {
        while let connection = idle.withLock({ $0.popLast() }) {
            if connection.usable { return .success(connection) }
            connection.close()
        }
        guard failedStarts.withLock({ $0 }) < Self.startLimit else {
            return .failure(DaemonError(description: "nix-daemon failed to start \(Self.startLimit) times; not trying again"))
        }
        let started = await start()
        failedStarts.withLock { failed in
            if case .success = started { failed = 0 } else { failed += 1 }
        }
        return started
    }

    /// Takes back a daemon after a build that ended on its own; others are let go.
    func give(_ connection: NixDaemonConnection) {
        guard connection.usable, connection.builds < buildLimit else {
            connection.close()
            return
        }
        let mark = connection.markIdle()
        idle.withLock { $0.append(connection) }
        let limit = idleLimit
        Task { [weak self] in
            try? await Task.sleep(for: limit)
            guard let self, connection.idle(since: mark) else { return }
            let taken = idle.withLock { idle -> Bool in
                guard let index = idle.firstIndex(where: { $0 === connection }) else { return false }
                idle.remove(at: index)
                return true
            }
            if taken { connection.close() }
        }
    }

    /// The process ids of the idle daemons.
    var idleProcesses: [pid_t] { idle.withLock { $0.map(\.pid) } }

    /// Lets every idle daemon go, and waits until they have ended.
    func closeAll() async {
        for connection in idle.withLock({ idle in defer { idle = [] }; return idle }) { await connection.closeAndWait() }
    }
}

/// A value shared between tasks, behind a lock.
final class Locked<Value: Sendable>: Sendable {
    private let mutex: Mutex<Value>

    init(_ value: Value) { mutex = Mutex(value) }

    func withLock<Result>(_ body: (inout sending Value) throws -> sending Result) rethrows -> sending Result {
        try mutex.withLock(body)
    }
}
