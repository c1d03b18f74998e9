/// Why the database could not be used.
public enum StoreError: Error, Sendable, CustomStringConvertible {
    /// The database file could not be opened or migrated.
    case unavailable(path: String, reason: String)
    /// A row does not hold what the schema promises.
    case corrupt(String)

    public var description: String {
        switch self {
        case .unavailable(let path, let reason):
            return "database \(path) cannot be used: \(reason); check that storage.data-dir is writable"
        case .corrupt(let detail): return "database holds an unexpected value: \(detail)"
        }
    }
}
