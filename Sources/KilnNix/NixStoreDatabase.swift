import Foundation
import KilnCore
import GRDBSQLite

/// nix's own store database, read-only: what a derivation's outputs are, which paths are valid,
/// and the NAR hash and size of a path, each answered without starting a nix process (a process
/// costs 40–100 ms; a job asked three). Every answer is nil when the database cannot say (not
/// there, locked, a content-addressed derivation without its outputs, a hash it does not hold as
/// sha256), and callers then ask nix.
struct NixStoreDatabase: Sendable {
    /// Where nix keeps it for the local store.
    static let localStore = "/nix/var/nix/db/db.sqlite"

    let path: String

    /// The local store's database, when Kiln builds in the local store and may read it.
    static func local(options: [String: String]) -> NixStoreDatabase? {
        guard options["store"] == nil, FileManager.default.isReadableFile(atPath: localStore) else { return nil }
        return NixStoreDatabase(path: localStore)
    }

    /// Each derivation's output paths, sorted; nil unless nix recorded them for every one.
    func outputs(of derivations: [String]) -> [String: [String]]? {
        namedOutputs(of: derivations)?.mapValues { $0.map(\.path).sorted() }
    }

    /// Each derivation's outputs by name; nil unless nix recorded them for every one, with a
    /// path (a content-addressed output's is known only once it is built: nix then says it).
    func namedOutputs(of derivations: [String]) -> [String: [(name: String, path: String)]]? {
        guard
            let rows = query(
                "SELECT v.path, o.id, o.path FROM DerivationOutputs o JOIN ValidPaths v ON v.id = o.drv WHERE v.path IN", derivations,
                columns: 3),
            rows.allSatisfy({ !$0[2].isEmpty })
        else { return nil }
        var outputs: [String: [(name: String, path: String)]] = [:]
        for row in rows { outputs[row[0], default: []].append((row[1], row[2])) }
        guard derivations.allSatisfy({ outputs[$0] != nil }) else { return nil }
        return outputs.mapValues { $0.sorted { $0.name < $1.name } }
    }

    /// Those of `paths` that are valid in the store.
    func valid(_ paths: [String]) -> Set<String>? {
        query("SELECT path FROM ValidPaths WHERE path IN", paths, columns: 1).map { Set($0.map { $0[0] }) }
    }

    /// The NAR hash (as nix prints it, `sha256-<base64>`) and size of each of `paths`; nil unless
    /// every one is valid with a sha256 hash.
    func narInfo(_ paths: [String]) -> [String: (narHash: String, narSize: Int64)]? {
        guard let rows = query("SELECT path, hash, narSize FROM ValidPaths WHERE path IN", paths, columns: 3) else { return nil }
        var info: [String: (narHash: String, narSize: Int64)] = [:]
        for row in rows {
            guard let hash = Self.sri(row[1]), let size = Int64(row[2]) else { return nil }
            info[row[0]] = (hash, size)
        }
        return paths.allSatisfy({ info[$0] != nil }) ? info : nil
    }

    /// `sha256:<hex>` (how the database holds a NAR hash) as `sha256-<base64>`.
    static func sri(_ stored: String) -> String? {
        guard stored.hasPrefix("sha256:"), let bytes = Hex.decode(stored.dropFirst(7)), bytes.count == 32 else { return nil }
        return "sha256-" + Data(bytes).base64EncodedString()
    }

    /// Runs `select` with ` (?, ?, …)` for `values` appended, and returns each row's first
    /// `columns` columns as text (NULL as ""); nil when the database cannot be read.
    private func query(_ select: String, _ values: [String], columns: Int32) -> [[String]]? {
        guard !values.isEmpty else { return [] }
        var connection: OpaquePointer?
        defer { sqlite3_close_v2(connection) }
        guard sqlite3_open_v2(path, &connection, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, nil) == SQLITE_OK else { return nil }
        sqlite3_busy_timeout(connection, 2000)
        let sql = select + " (" + Array(repeating: "?", count: values.count).joined(separator: ", ") + ")"
        var statement: OpaquePointer?
        defer { sqlite3_finalize(statement) }
        guard sqlite3_prepare_v2(connection, sql, -1, &statement, nil) == SQLITE_OK else { return nil }
        let transient = unsafeBitCast(OpaquePointer(bitPattern: -1), to: sqlite3_destructor_type.self)
        for (index, value) in values.enumerated() {
            guard sqlite3_bind_text(statement, Int32(index + 1), value, -1, transient) == SQLITE_OK else { return nil }
        }
        var rows: [[String]] = []
        while true {
            switch sqlite3_step(statement) {
            case SQLITE_ROW:
                rows.append(
                    (0..<columns).map { column in
                        sqlite3_column_text(statement, column).map { String(cString: $0) } ?? ""
                    })
            case SQLITE_DONE: return rows
            default: return nil
            }
        }
    }
}
