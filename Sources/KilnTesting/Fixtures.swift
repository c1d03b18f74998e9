import Foundation

/// The forges' real webhook payloads in `../shared/fixtures/forges/`, read at test time
/// (never copied into the project).
public enum Fixtures {
    /// The fixtures directory: `KILN_FIXTURES`, or `../shared/fixtures/forges` beside the package.
    public static var directory: String {
        if let path = ProcessInfo.processInfo.environment["KILN_FIXTURES"] { return path }
        let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
        return packageRoot.deletingLastPathComponent().appendingPathComponent("shared/fixtures/forges").path
    }

    /// A fixture's exact bytes, e.g. `github/push.json`.
    public static func body(_ name: String) throws -> [UInt8] {
        let path = "\(directory)/\(name)"
        guard let data = FileManager.default.contents(atPath: path) else {
            throw FixtureMissing(path: path)
        }
        return Array(data)
    }

    /// The headers recorded with a fixture (`github/push.headers.json` for `github/push.json`); empty when none.
    public static func headers(_ name: String) throws -> [(name: String, value: String)] {
        let path = "\(directory)/\(name.replacingOccurrences(of: ".json", with: ".headers.json"))"
        guard let data = FileManager.default.contents(atPath: path) else { return [] }
        let object = try JSONSerialization.jsonObject(with: data) as? [String: String] ?? [:]
        return object.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
    }
}

/// A fixture that is not where the tests expect it.
public struct FixtureMissing: Error, CustomStringConvertible {
    /// Where it was looked for.
    public var path: String
    public var description: String {
        "fixture \(path) is missing: the tests read ../shared/fixtures/forges beside the clone (or KILN_FIXTURES)"
    }
}
