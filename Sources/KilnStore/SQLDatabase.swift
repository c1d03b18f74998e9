import Foundation
import GRDB

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
}

/// A GRDB connection; statements are prepared once per connection and SQL text.
struct GRDBConnection: SQLConnection {
    let db: Database
    var dialect: SQLDialect { .sqlite }

    func execute(_ sql: String, _ arguments: [(any SQLBindable)?]) throws -> Int {
        try db.cachedStatement(sql: sql).execute(arguments: Self.arguments(arguments))
        return db.changesCount
    }

    func announceWork() {}

    func rows(_ sql: String, _ arguments: [(any SQLBindable)?]) throws -> [SQLRow] {
        try Row.fetchAll(db.cachedStatement(sql: sql), arguments: Self.arguments(arguments)).map { row in
            SQLRow(names: Array(row.columnNames), values: row.databaseValues.map(Self.value))
        }
    }

    static func arguments(_ values: [(any SQLBindable)?]) -> StatementArguments {
        StatementArguments(values.map { value -> DatabaseValue in
            switch value?.sqlValue ?? .null {
            case .null: return .null
            case .integer(let integer): return integer.databaseValue
            case .real(let real): return real.databaseValue
            case .text(let text): return text.databaseValue
            case .blob(let bytes): return Data(bytes).databaseValue
            }
        })
    }

    static func value(_ value: DatabaseValue) -> SQLValue {
        switch value.storage {
        case .null: return .null
        case .int64(let integer): return .integer(integer)
        case .double(let real): return .real(real)
        case .string(let text): return .text(text)
        case .blob(let data): return .blob(Array(data))
        }
    }
}
