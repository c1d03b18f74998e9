import Foundation
import GRDB
import GRDBSQLite

/// A value bound to a statement or read from a row: the types both of Kiln's databases store.
/// Booleans are integers (0 and 1), timestamps seconds since 1970, lists and objects JSON text.
public enum SQLValue: Sendable, Hashable {
    case null
    case integer(Int64)
    case real(Double)
    case text(String)
    case blob([UInt8])
}

/// A Swift value that binds to a statement.
public protocol SQLBindable: Sendable {
    var sqlValue: SQLValue { get }
}

/// A Swift value a column can be read as.
public protocol SQLReadable {
    /// Nil when the column's value cannot be read as this type (or is NULL).
    init?(sqlValue: SQLValue)
}

extension Int64: SQLBindable, SQLReadable {
    public var sqlValue: SQLValue { .integer(self) }
    public init?(sqlValue: SQLValue) {
        switch sqlValue {
        case .integer(let value): self = value
        case .real(let value) where value.rounded() == value && abs(value) < 9e18: self = Int64(value)
        default: return nil
        }
    }
}

extension Int: SQLBindable, SQLReadable {
    public var sqlValue: SQLValue { .integer(Int64(self)) }
    public init?(sqlValue: SQLValue) {
        guard let value = Int64(sqlValue: sqlValue) else { return nil }
        self = Int(value)
    }
}

extension Int32: SQLBindable, SQLReadable {
    public var sqlValue: SQLValue { .integer(Int64(self)) }
    public init?(sqlValue: SQLValue) {
        guard let value = Int64(sqlValue: sqlValue), let narrow = Int32(exactly: value) else { return nil }
        self = narrow
    }
}

extension Double: SQLBindable, SQLReadable {
    public var sqlValue: SQLValue { .real(self) }
    public init?(sqlValue: SQLValue) {
        switch sqlValue {
        case .real(let value): self = value
        case .integer(let value): self = Double(value)
        default: return nil
        }
    }
}

extension Bool: SQLBindable, SQLReadable {
    public var sqlValue: SQLValue { .integer(self ? 1 : 0) }
    public init?(sqlValue: SQLValue) {
        guard let value = Int64(sqlValue: sqlValue) else { return nil }
        self = value != 0
    }
}

extension String: SQLBindable, SQLReadable {
    public var sqlValue: SQLValue { .text(self) }
    public init?(sqlValue: SQLValue) {
        guard case .text(let value) = sqlValue else { return nil }
        self = value
    }
}

extension Data: SQLBindable, SQLReadable {
    public var sqlValue: SQLValue { .blob(Array(self)) }
    public init?(sqlValue: SQLValue) {
        guard case .blob(let bytes) = sqlValue else { return nil }
        self = Data(bytes)
    }
}

/// One row of a result: its columns by name, in order.
public struct SQLRow: Sendable {
    let names: [String]
    let values: [SQLValue]

    /// The value of `column`; `.null` when there is no such column.
    public func value(_ column: String) -> SQLValue {
        guard let index = names.firstIndex(of: column) else { return .null }
        return values[index]
    }

    /// `column` as `T`; nil when NULL (or of another type).
    public subscript<T: SQLReadable>(_ column: String) -> T? { T(sqlValue: value(column)) }

    /// `column` as `T`, which the schema guarantees (NOT NULL); a stop with the column's name
    /// otherwise, as a corrupt database deserves.
    public subscript<T: SQLReadable>(_ column: String) -> T {
        guard let value = T(sqlValue: value(column)) else { fatalError("column \(column) is not a \(T.self): \(value(column))") }
        return value
    }
}

/// The SQL dialect of a database: the few expressions that differ.
public enum SQLDialect: Sendable {
    case sqlite, postgres

    /// The length of the JSON list in the text column `expression`.
    func jsonLength(_ expression: String) -> String {
        switch self {
        case .sqlite: return "json_array_length(\(expression))"
        case .postgres: return "json_array_length(\(expression)::json)"
        }
    }

    /// The larger of two numbers.
    func greatest(_ a: String, _ b: String) -> String {
        switch self {
        case .sqlite: return "MAX(\(a), \(b))"
        case .postgres: return "GREATEST(\(a), \(b))"
        }
    }

    /// The sum of the number `field` of the objects in the JSON list in text column `expression`.
    func jsonSum(_ field: String, of expression: String) -> String {
        switch self {
        case .sqlite: return "(SELECT COALESCE(SUM(json_extract(o.value, '$.\(field)')), 0) FROM json_each(\(expression)) o)"
        case .postgres: return "(SELECT COALESCE(SUM((o.value->>'\(field)')::bigint), 0) FROM json_array_elements(\(expression)::json) o)"
        }
    }
}

/// One connection, inside a transaction the database opened: statements with `?` placeholders.
public protocol SQLConnection {
    /// Its dialect.
    var dialect: SQLDialect { get }
    /// Runs a statement; returns how many rows it changed.
    @discardableResult
    func execute(_ sql: String, _ arguments: [(any SQLBindable)?]) throws -> Int
    /// Runs a query; returns its rows.
    func rows(_ sql: String, _ arguments: [(any SQLBindable)?]) throws -> [SQLRow]
    /// Tells other instances on the database, once the transaction commits, that there is new
    /// work or news (PostgreSQL's NOTIFY); nothing where only one instance can use the database.
    func announceWork()
}

extension SQLConnection {
    /// Runs a statement without arguments.
    @discardableResult
    func execute(_ sql: String) throws -> Int { try execute(sql, []) }

    /// Runs a query without arguments.
    func rows(_ sql: String) throws -> [SQLRow] { try rows(sql, []) }

    /// The first row, or nil.
    func row(_ sql: String, _ arguments: [(any SQLBindable)?] = []) throws -> SQLRow? { try rows(sql, arguments).first }

    /// The first column of the first row, or nil (no row, or NULL).
    func value<T: SQLReadable>(_ type: T.Type, _ sql: String, _ arguments: [(any SQLBindable)?] = []) throws -> T? {
        guard let row = try rows(sql, arguments).first, let first = row.values.first else { return nil }
        return T(sqlValue: first)
    }

    /// The first column of every row (NULLs left out).
    func values<T: SQLReadable>(_ type: T.Type, _ sql: String, _ arguments: [(any SQLBindable)?] = []) throws -> [T] {
        try rows(sql, arguments).compactMap { $0.values.first.flatMap(T.init(sqlValue:)) }
    }
}

/// A database whose reads and writes are transactions on one connection each.
public protocol SQLDatabase: Sendable {
    /// Its dialect.
    var dialect: SQLDialect { get }
    /// Runs `body` in a read-only transaction.
    func read<T: Sendable>(_ body: @Sendable (any SQLConnection) throws -> T) async throws -> T
    /// Runs `body` in a transaction that commits when it returns and rolls back when it throws.
    func write<T: Sendable>(_ body: @Sendable (any SQLConnection) throws -> T) async throws -> T
}

// MARK: SQLite, through GRDB

/// A GRDB database (a file's pool, or a queue in memory) as an `SQLDatabase`.
struct GRDBDatabase: SQLDatabase {
    let writer: any DatabaseWriter
    var dialect: SQLDialect { .sqlite }

    func read<T: Sendable>(_ body: @Sendable (any SQLConnection) throws -> T) async throws -> T {
        try await writer.read { db in try body(GRDBConnection(db: db)) }
    }

    func write<T: Sendable>(_ body: @Sendable (any SQLConnection) throws -> T) async throws -> T {
        try await writer.write { db in try body(GRDBConnection(db: db)) }
    }

    /// Runs `body` in a write transaction on the calling thread, which waits for the writer.
    func writeBlocking<T>(_ body: (any SQLConnection) throws -> T) throws -> T {
        try writer.write { db in try body(GRDBConnection(db: db)) }
    }
}

/// A GRDB connection; statements are prepared once per connection and SQL text, and bound,
/// stepped and read through SQLite's own calls: GRDB's `StatementArguments` and `Row` cost
/// more than the statements themselves on intake's path.
struct GRDBConnection: SQLConnection {
    let db: Database
    var dialect: SQLDialect { .sqlite }

    func execute(_ sql: String, _ arguments: [(any SQLBindable)?]) throws -> Int {
        let statement = try prepared(sql, arguments)
        while try step(statement, sql) {}
        return db.changesCount
    }

    func announceWork() {}

    func rows(_ sql: String, _ arguments: [(any SQLBindable)?]) throws -> [SQLRow] {
        let statement = try prepared(sql, arguments)
        let handle = statement.sqliteStatement
        let count = sqlite3_column_count(handle)
        var names: [String]?
        var rows: [SQLRow] = []
        while try step(statement, sql) {
            if names == nil { names = (0..<count).map { String(cString: sqlite3_column_name(handle, $0)) } }
            rows.append(SQLRow(names: names!, values: (0..<count).map { Self.column($0, of: handle) }))
        }
        return rows
    }

    /// The cached statement for `sql`, reset and bound to `arguments`.
    private func prepared(_ sql: String, _ arguments: [(any SQLBindable)?]) throws -> Statement {
        let statement = try db.cachedStatement(sql: sql)
        let handle = statement.sqliteStatement
        // Every parameter is bound below, so nothing of the last use's values is left.
        sqlite3_reset(handle)
        guard Int(sqlite3_bind_parameter_count(handle)) == arguments.count else {
            throw DatabaseError(
                resultCode: .SQLITE_MISUSE, message: "\(arguments.count) arguments for \(sqlite3_bind_parameter_count(handle)) parameters", sql: sql)
        }
        for (offset, argument) in arguments.enumerated() {
            let index = Int32(offset + 1)
            let code: Int32
            switch argument?.sqlValue ?? .null {
            case .null: code = sqlite3_bind_null(handle, index)
            case .integer(let integer): code = sqlite3_bind_int64(handle, index, integer)
            case .real(let real): code = sqlite3_bind_double(handle, index, real)
            case .text(let text): code = sqlite3_bind_text(handle, index, text, -1, Self.transient)
            case .blob(let bytes):
                code = bytes.withUnsafeBytes { sqlite3_bind_blob(handle, index, $0.baseAddress, Int32($0.count), Self.transient) }
            }
            guard code == SQLITE_OK else { throw error(code, sql) }
        }
        return statement
    }

    /// Steps once: true when a row is ready, false when done.
    private func step(_ statement: Statement, _ sql: String) throws -> Bool {
        switch sqlite3_step(statement.sqliteStatement) {
        case SQLITE_ROW: return true
        case SQLITE_DONE: return false
        case let code:
            let failure = error(code, sql)
            sqlite3_reset(statement.sqliteStatement)
            throw failure
        }
    }

    private func error(_ code: Int32, _ sql: String) -> DatabaseError {
        DatabaseError(resultCode: ResultCode(rawValue: code), message: String(cString: sqlite3_errmsg(db.sqliteConnection)), sql: sql)
    }

    private static let transient = unsafeBitCast(OpaquePointer(bitPattern: -1), to: sqlite3_destructor_type.self)

    private static func column(_ index: Int32, of handle: OpaquePointer) -> SQLValue {
        switch sqlite3_column_type(handle, index) {
        case SQLITE_INTEGER: return .integer(sqlite3_column_int64(handle, index))
        case SQLITE_FLOAT: return .real(sqlite3_column_double(handle, index))
        case SQLITE_TEXT:
            guard let text = sqlite3_column_text(handle, index) else { return .text("") }
            return .text(String(decoding: UnsafeRawBufferPointer(start: text, count: Int(sqlite3_column_bytes(handle, index))), as: UTF8.self))
        case SQLITE_BLOB:
            let count = Int(sqlite3_column_bytes(handle, index))
            guard count > 0, let bytes = sqlite3_column_blob(handle, index) else { return .blob([]) }
            return .blob(Array(UnsafeRawBufferPointer(start: bytes, count: count)))
        default: return .null
        }
    }
}
