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
    /// The most bytes of head or tail shown; lines beyond go to the gap.
    static let maxPartBytes = 1 << 20
    /// The most characters of one line shown; the raw log has the rest.
    static let maxLineCharacters = 4096

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
            return text.split(separator: "\n", omittingEmptySubsequences: false).enumerated().map { index, line in
                // A build can print megabytes without a newline: a page shows the start of such a line.
                let shown = line.count > maxLineCharacters ? line.prefix(maxLineCharacters) + " … (the raw log has the rest of this line)" : line
                return Line(number: range.lowerBound + index + 1, text: String(shown))
            }
        }
        /// Where the line after `line` starts (the file's end for the last).
        func end(_ line: Int) -> Int { line + 1 < count ? starts[line + 1] : offset }
        var result = LogLines(size: offset)
        guard offset > 0 else { return result }
        // The head ends after `headLines` lines or `maxPartBytes` bytes, the tail likewise from the end.
        var head = 0
        while head < min(count, headLines), head == 0 || end(head) <= maxPartBytes { head += 1 }
        var tail = count
        while tail > head, count - tail < tailLines, tail == count || offset - starts[tail - 1] <= maxPartBytes { tail -= 1 }
        result.head = lines(0..<head)
        result.tail = lines(tail..<count)
        if tail > head { result.gap = Gap(firstLine: head + 1, lastLine: tail, bytes: starts[head]..<starts[tail]) }
        return result
    }
}
