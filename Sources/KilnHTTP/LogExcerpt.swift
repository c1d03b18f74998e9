import Foundation

/// The part of a job log a page shows: all of it up to a limit, else its end.
struct LogExcerpt {
    /// The text shown.
    var text: String
    /// Bytes not shown (from the start of the file).
    var skipped: Int
    /// Where the bytes shown end: the file's size when it was read.
    var end: Int = 0

    static let limit = 256 << 10

    static func read(_ path: String) -> LogExcerpt {
        guard let handle = FileHandle(forReadingAtPath: path) else { return LogExcerpt(text: "", skipped: 0) }
        defer { try? handle.close() }
        let size = (try? handle.seekToEnd()).map(Int.init) ?? 0
        let start = max(0, size - limit)
        try? handle.seek(toOffset: UInt64(start))
        let data = (try? handle.readToEnd()) ?? Data()
        return LogExcerpt(text: String(decoding: data, as: UTF8.self), skipped: start, end: start + data.count)
    }
}
