import Foundation
import Logging
import PostgresNIO
import Synchronization

/// Where Kiln's PostgreSQL database is: `storage.database` (`postgres://user@host:port/db`)
/// and the password from `storage.database-password-file`.
public struct PostgresLocation: Sendable, Hashable {
    /// The server's host name or address.
    public var host: String
    /// Its port.
    public var port: Int
    /// The role Kiln logs in as.
    public var username: String
    /// Its password; nil for none (trust or peer authentication).
    public var password: String?
    /// The database.
    public var database: String

    /// Creates a location.
    public init(host: String, port: Int = 5432, username: String, password: String? = nil, database: String) {
        self.host = host
        self.port = port
        self.username = username
        self.password = password
        self.database = database
    }

    /// `postgres://user@host:port/database`, for messages (never a password).
    public var display: String { "postgres://\(username)@\(host):\(port)/\(database)" }

    /// Reads `postgres://user@host[:port]/database` (or `postgresql://`); nil for anything else.
    /// A password in the URL is refused: it belongs in `storage.database-password-file`.
    public init?(url: String, password: String?) {
        guard let components = URLComponents(string: url), ["postgres", "postgresql"].contains(components.scheme ?? ""),
            let host = components.host, !host.isEmpty, let user = components.user, !user.isEmpty, components.password == nil
        else { return nil }
        let database = String(components.path.drop { $0 == "/" })
        guard !database.isEmpty, !database.contains("/") else { return nil }
        let unsupported = (components.queryItems ?? []).filter { !($0.name == "sslmode" && $0.value == "disable") }
        guard unsupported.isEmpty else { return nil }
        self.init(host: host, port: components.port ?? 5432, username: user, password: password, database: database)
    }
}

/// A PostgreSQL database as an `SQLDatabase`: a few connections, each carrying one transaction
/// at a time. Transactions are SERIALIZABLE, and run again when the server says they could not
/// be (a serialization failure or a deadlock): two writers see each other's work as SQLite's
/// one writer does, across connections and across Kiln instances. Statements run on the
/// caller's thread, which waits for each answer (the store's transactions are short and on
/// loopback or a LAN).
final class PostgresDatabase: SQLDatabase {
    var dialect: SQLDialect { .postgres }
    private let location: PostgresLocation
    private let logger: Logger
    private let pool: Mutex<(idle: [PostgresConnection], open: Int, waiting: [CheckedContinuation<PostgresConnection?, Never>])> = Mutex(
        ([], 0, []))
    /// Connections open at most.
    let maxConnections: Int
    private let nextID = Atomic<Int>(1)

    init(_ location: PostgresLocation, maxConnections: Int = 4, logger: Logger) {
        self.location = location
        self.maxConnections = maxConnections
        self.logger = logger
    }

    deinit {
        // A connection must be closed before it goes: the callback keeps it until it is.
        for connection in pool.withLock({ $0.idle }) { Self.close(connection) }
    }

    /// Closes the idle connections.
    func close() async {
        let idle = pool.withLock { state -> [PostgresConnection] in
            defer { state.idle = [] }
            state.open -= state.idle.count
            return state.idle
        }
        for connection in idle { try? await connection.close() }
    }

    func read<T: Sendable>(_ body: @Sendable (any SQLConnection) throws -> T) async throws -> T {
        try await transaction(readOnly: true, body)
    }

    func write<T: Sendable>(_ body: @Sendable (any SQLConnection) throws -> T) async throws -> T {
        try await transaction(readOnly: false, body)
    }

    private func transaction<T: Sendable>(readOnly: Bool, _ body: @Sendable (any SQLConnection) throws -> T) async throws -> T {
        var attempt = 0
        while true {
            attempt += 1
            let connection = try await take()
            var broken = false
            do {
                // The statements wait for their answers: on a thread of their own, never on one
                // of Swift's few cooperative threads (two on two cores), which would stall every
                // other task meanwhile. The closure does not outlive this call: it is awaited here.
                let transaction = PostgresSQLConnection(connection: connection, logger: logger)
                let result = try await withoutActuallyEscaping(body) { body in
                    try await Self.onStatementThread { try transaction.transaction(readOnly: readOnly, body) }
                }
                give(connection)
                return result
            } catch let error as PSQLError where error.code == .server && ["40001", "40P01"].contains(error.serverInfo?[.sqlState] ?? "") {
                give(connection)
                // Another transaction changed what this one read: run it again on what is there now.
                if attempt >= 20 { throw PostgresStoreError(error) }
                try await Task.sleep(for: .milliseconds(Int.random(in: 1...(5 * attempt))))
            } catch let error as PSQLError {
                broken = error.code != .server
                if broken { discard(connection) } else { give(connection) }
                throw PostgresStoreError(error)
            } catch {
                give(connection)
                throw error
            }
        }
    }

    /// Runs `work` where it may wait for PostgreSQL: a serial queue of its own, which Dispatch
    /// gives a thread of its own (an overcommitting queue) instead of one of its CPU-bound few.
    private static func onStatementThread<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
        // The queue lets go of the work before the caller resumes: the caller's closure must not
        // outlive `withoutActuallyEscaping`.
        let held = Held(work)
        return try await withCheckedThrowingContinuation { continuation in
            DispatchQueue(label: "kiln.postgres.transaction").async {
                let result = Result { try held.take()() }
                continuation.resume(with: result)
            }
        }
    }

    private final class Held<T: Sendable>: @unchecked Sendable {
        private var work: (@Sendable () throws -> T)?
        init(_ work: @escaping @Sendable () throws -> T) { self.work = work }
        /// The work, no longer held here.
        func take() -> @Sendable () throws -> T {
            defer { work = nil }
            return work!
        }
    }

    /// An idle connection, a new one while fewer than `maxConnections` are open, or the next one given back.
    private func take() async throws -> PostgresConnection {
        enum Next { case use(PostgresConnection), open, wait }
        let next = pool.withLock { state -> Next in
            if let idle = state.idle.popLast() { return .use(idle) }
            if state.open < maxConnections {
                state.open += 1
                return .open
            }
            return .wait
        }
        switch next {
        case .use(let connection):
            if !connection.isClosed { return connection }
            discard(connection)
            return try await take()
        case .open:
            do {
                return try await connect()
            } catch {
                pool.withLock { $0.open -= 1 }
                throw PostgresStoreError(error, connecting: location)
            }
        case .wait:
            let handed = await withCheckedContinuation { (continuation: CheckedContinuation<PostgresConnection?, Never>) in
                let immediate = pool.withLock { state -> PostgresConnection? in
                    if let idle = state.idle.popLast() { return idle }
                    state.waiting.append(continuation)
                    return nil
                }
                if let immediate { continuation.resume(returning: immediate) }
            }
            guard let handed else { return try await take() }
            return handed
        }
    }

    private func give(_ connection: PostgresConnection) {
        let waiter = pool.withLock { state -> CheckedContinuation<PostgresConnection?, Never>? in
            if !state.waiting.isEmpty { return state.waiting.removeFirst() }
            state.idle.append(connection)
            return nil
        }
        waiter?.resume(returning: connection)
    }

    private static func close(_ connection: PostgresConnection) {
        let closed: EventLoopFuture<Void> = connection.close()
        closed.whenComplete { _ in _ = connection }
    }

    private func discard(_ connection: PostgresConnection) {
        Self.close(connection)
        let waiter = pool.withLock { state -> CheckedContinuation<PostgresConnection?, Never>? in
            state.open -= 1
            return state.waiting.isEmpty ? nil : state.waiting.removeFirst()
        }
        // A waiter opens a connection of its own instead.
        waiter?.resume(returning: nil)
    }

    /// A new connection to the database.
    private func connect() async throws -> PostgresConnection {
        try await PostgresConnection.connect(
            configuration: .init(
                host: location.host, port: location.port, username: location.username, password: location.password,
                database: location.database, tls: .disable),
            id: nextID.add(1, ordering: .relaxed).oldValue, logger: logger)
    }

    /// Calls `wake` whenever any instance on the database (this one too) announces work, on a
    /// connection of its own, connecting again every 10 s after it is lost; until `stop` is cancelled.
    func listen(_ wake: @escaping @Sendable () -> Void) async {
        while !Task.isCancelled {
            do {
                let connection = try await connect()
                let context = connection.addListener(channel: PostgresSQLConnection.channel) { _, _ in wake() }
                // Work announced while this instance was not listening is found by its loops' next look.
                wake()
                await withTaskCancellationHandler {
                    _ = try? await connection.closeFuture.get()
                } onCancel: {
                    context.stop()
                    let _: EventLoopFuture<Void> = connection.close()
                }
                if !connection.isClosed { try? await connection.close() }
            } catch {
                logger.warning("cannot listen for other instances' work; looking every 10 s: \(PostgresStoreError(error))")
            }
            try? await Task.sleep(for: .seconds(10))
        }
    }

    /// Applies the steps of `migrations` that `kiln_migrations` does not list, each in one
    /// transaction, holding an advisory lock meanwhile: instances that start together migrate once.
    func migrate(_ migrations: [(name: String, statements: [String])]) async throws {
        let connection = try await take()
        func query(_ sql: String, _ binds: PostgresBindings = PostgresBindings()) async throws -> [PostgresRow] {
            try await connection.query(PostgresQuery(unsafeSQL: sql, binds: binds), logger: logger).collect()
        }
        do {
            _ = try await query("SELECT pg_advisory_lock(7361001)")
            _ = try await query("CREATE TABLE IF NOT EXISTS kiln_migrations (name TEXT PRIMARY KEY, applied_at DOUBLE PRECISION NOT NULL)")
            let applied = Set(try await query("SELECT name FROM kiln_migrations").map { try $0.decode(String.self) })
            for (name, statements) in migrations where !applied.contains(name) {
                _ = try await query("BEGIN")
                do {
                    for statement in statements { _ = try await query(statement) }
                    var binds = PostgresBindings()
                    binds.append(name)
                    binds.append(Date().timeIntervalSince1970)
                    _ = try await query("INSERT INTO kiln_migrations (name, applied_at) VALUES ($1, $2)", binds)
                    _ = try await query("COMMIT")
                } catch {
                    _ = try? await query("ROLLBACK")
                    throw error
                }
            }
            _ = try await query("SELECT pg_advisory_unlock(7361001)")
            give(connection)
        } catch {
            // The lock goes with the connection.
            discard(connection)
            throw PostgresStoreError(error)
        }
    }

    /// The steps `kiln_migrations` lists (`kiln doctor`); empty before the first.
    func appliedMigrations() async throws -> [String] {
        try await read { db in
            guard try db.value(String.self, "SELECT to_regclass('kiln_migrations')::text") != nil else { return [] }
            return try db.values(String.self, "SELECT name FROM kiln_migrations ORDER BY applied_at, name")
        }
    }
}

/// Why PostgreSQL failed, in the server's words (PostgresNIO's own description says nothing).
public struct PostgresStoreError: Error, Sendable, CustomStringConvertible {
    public let description: String

    init(_ error: any Error, connecting location: PostgresLocation? = nil) {
        let prefix = location.map { "cannot connect to PostgreSQL at \($0.host):\($0.port) as \($0.username): " } ?? "PostgreSQL: "
        if let error = error as? PSQLError {
            if let info = error.serverInfo {
                description = prefix + "\(info[.message] ?? "error") (SQLSTATE \(info[.sqlState] ?? "?"))"
                    + (info[.detail].map { ": \($0)" } ?? "")
            } else {
                description = prefix + "\(error.code)" + (error.underlying.map { ": \($0)" } ?? "")
            }
        } else {
            description = prefix + "\(error)"
        }
    }
}

/// One PostgreSQL connection inside a transaction; `?` placeholders become `$1`, `$2`…
struct PostgresSQLConnection: SQLConnection {
    let connection: PostgresConnection
    let logger: Logger
    var dialect: SQLDialect { .postgres }
    private let announced = Announced()

    /// The channel on which instances tell each other of new work.
    static let channel = "kiln_work"

    init(connection: PostgresConnection, logger: Logger) {
        self.connection = connection
        self.logger = logger
    }

    private final class Announced: @unchecked Sendable {
        var raised = false
    }

    func announceWork() { announced.raised = true }

    func transaction<T>(readOnly: Bool, _ body: (any SQLConnection) throws -> T) throws -> T {
        announced.raised = false
        try command(readOnly ? "BEGIN ISOLATION LEVEL SERIALIZABLE READ ONLY" : "BEGIN ISOLATION LEVEL SERIALIZABLE")
        do {
            let result = try body(self)
            // Delivered at the commit, once however often it was raised.
            if announced.raised { try command("NOTIFY \(Self.channel)") }
            try command("COMMIT")
            return result
        } catch {
            try? command("ROLLBACK")
            throw error
        }
    }

    private func command(_ sql: String) throws {
        _ = try connection.query(PostgresQuery(unsafeSQL: sql), logger: logger).wait()
    }

    func execute(_ sql: String, _ arguments: [(any SQLBindable)?]) throws -> Int {
        try run(sql, arguments).metadata.rows ?? 0
    }

    func rows(_ sql: String, _ arguments: [(any SQLBindable)?]) throws -> [SQLRow] {
        try run(sql, arguments).rows.map { row in
            try SQLRow(names: row.map(\.columnName), values: row.map(Self.value))
        }
    }

    private func run(_ sql: String, _ arguments: [(any SQLBindable)?]) throws -> PostgresQueryResult {
        var binds = PostgresBindings(capacity: arguments.count)
        for argument in arguments {
            switch argument?.sqlValue ?? .null {
            case .null: binds.appendNull()
            case .integer(let value): binds.append(value)
            case .real(let value): binds.append(value)
            case .text(let value): binds.append(value)
            case .blob(let bytes): binds.append(ByteBuffer(bytes: bytes))
            }
        }
        return try connection.query(PostgresQuery(unsafeSQL: Self.numbered(sql), binds: binds), logger: logger).wait()
    }

    /// `sql` with each `?` outside quotes numbered as PostgreSQL wants it.
    static func numbered(_ sql: String) -> String {
        var result = ""
        var quoted = false
        var number = 0
        for character in sql {
            if character == "'" { quoted.toggle() }
            if character == "?", !quoted {
                number += 1
                result += "$\(number)"
            } else {
                result.append(character)
            }
        }
        return result
    }

    static func value(_ cell: PostgresCell) throws -> SQLValue {
        guard cell.bytes != nil else { return .null }
        switch cell.dataType {
        case .int2, .int4, .int8: return .integer(try cell.decode(Int64.self))
        case .float4, .float8: return .real(try cell.decode(Double.self))
        case .bool: return .integer(try cell.decode(Bool.self) ? 1 : 0)
        case .bytea: return .blob(Array(try cell.decode(ByteBuffer.self).readableBytesView))
        case .numeric:
            // SUM of a bigint column, AVG: whole numbers stay integers.
            let decimal = try cell.decode(Decimal.self)
            let double = NSDecimalNumber(decimal: decimal).doubleValue
            if double.rounded() == double, abs(double) < 9e18 { return .integer(Int64(double)) }
            return .real(double)
        default: return .text(try cell.decode(String.self))
        }
    }
}
