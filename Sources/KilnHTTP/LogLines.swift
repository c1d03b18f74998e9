import Foundation

/// The lines of a log that a page shows: all of a short log; of a long one the first 2,000 and the
/// last 3,000, numbered, and where the middle is (the page loads it on demand, by byte range).
struct LogLines {
    /// One line and its number (from 1).
    struct Line: Equatable {
        var number: Int
        var text: String
    }

    /// The lines left out: their numbers and their bytes in the file.
    struct Gap: Equatable {
        var firstLine: Int
        var lastLine: Int
        var bytes: Range<Int>
    }

    var head: [Line] = []
    var gap: Gap?
    var tail: [Line] = []
    /// The file's size when read: where a follower goes on from.
    var size = 0

    static let headLines = 2000
    static let tailLines = 3000

    /// Reads the log at `path` (nothing when there is none).
    static func read(_ path: String, headLines: Int = headLines, tailLines: Int = tailLines) -> LogLines {
        guard let handle = FileHandle(forReadingAtPath: path) else { return LogLines() }
        defer { try? handle.close() }
        // Where each line starts; one pass over the file, 64 KiB at a time.
        var starts = [0]
        var offset = 0
        while let data = try? handle.read(upToCount: 64 << 10), !data.isEmpty {
            data.withUnsafeBytes { bytes in
                for index in 0..<bytes.count where bytes[index] == 0x0A { starts.append(offset + index + 1) }
            }
            offset += data.count
        }
        if starts.last == offset { starts.removeLast() }  // a final newline starts no line
        let count = starts.count
        func lines(_ range: Range<Int>) -> [Line] {
            guard !range.isEmpty else { return [] }
            let from = starts[range.lowerBound]
            let to = range.upperBound < count ? starts[range.upperBound] : offset
            guard (try? handle.seek(toOffset: UInt64(from))) != nil, let data = try? handle.read(upToCount: to - from) else { return [] }
            var text = String(decoding: data, as: UTF8.self)
            if text.hasSuffix("\n") { text.removeLast() }
            return text.split(separator: "\n", omittingEmptySubsequences: false).enumerated().map {
                Line(number: range.lowerBound + $0.offset + 1, text: String($0.element))
            }
        }
        var result = LogLines(size: offset)
        guard offset > 0 else { return result }
        if count <= headLines + tailLines {
            result.head = lines(0..<count)
        } else {
            result.head = lines(0..<headLines)
            result.tail = lines((count - tailLines)..<count)
            result.gap = Gap(firstLine: headLines + 1, lastLine: count - tailLines, bytes: starts[headLines]..<starts[count - tailLines])
        }
        return result
    }
}
