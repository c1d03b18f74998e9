import Foundation

/// The machine's memory, from /proc/meminfo.
public enum SystemMemory {
    /// Bytes available for new work (`MemAvailable`); nil when unknown.
    public static func available() -> Int? { read("MemAvailable") }

    /// Bytes of physical memory (`MemTotal`); nil when unknown.
    public static func total() -> Int? { read("MemTotal") }

    private static func read(_ field: String) -> Int? {
        guard let text = try? String(contentsOfFile: "/proc/meminfo", encoding: .utf8) else { return nil }
        for line in text.split(separator: "\n") where line.hasPrefix(field + ":") {
            let number = line.dropFirst(field.count + 1).split(separator: " ").first.flatMap { Int($0) }
            return number.map { $0 * 1024 }
        }
        return nil
    }
}
