import Foundation
import KilnTesting
import Testing

@testable import KilnHTTP

@Suite struct LogFileResponseTests {
    @Test(arguments: [
        ("bytes=0-9", 100, LogFileResponse.Part.range(0...9)), ("bytes=90-", 100, .range(90...99)),
        ("bytes=-10", 100, .range(90...99)), ("bytes=-500", 100, .range(0...99)), ("bytes=50-500", 100, .range(50...99)),
        ("bytes=100-", 100, .unsatisfiable), ("bytes=9-3", 100, .unsatisfiable), ("bytes=-0", 100, .unsatisfiable),
        ("bytes=0-1,5-6", 100, .whole), ("items=0-1", 100, .whole), ("bytes=a-b", 100, .whole), ("bytes=0-", 0, .unsatisfiable),
    ] as [(String, Int, LogFileResponse.Part)])
    func rangesAreRead(header: String, size: Int, expected: LogFileResponse.Part) {
        #expect(LogFileResponse.parse(header, size: size) == expected)
    }

    @Test func theTailStartsAtTheRightLineAcrossChunks() async throws {
        try await withTemporaryDirectory("kiln-tail") { directory in
            // Lines longer than a chunk, and a file with and without a final newline.
            let lines = (0..<40).map { index in "\(index) " + String(repeating: "x", count: 5000 + index) }
            for ending in ["\n", ""] {
                let path = directory.appending("log\(ending.isEmpty ? "a" : "b")")
                let text = lines.joined(separator: "\n") + ending
                try text.write(toFile: path, atomically: true, encoding: .utf8)
                let handle = try #require(FileHandle(forReadingAtPath: path))
                defer { try? handle.close() }
                let size = text.utf8.count
                for count in [1, 2, 13, 39] {
                    let start = LogFileResponse.tailStart(handle, size: size, lines: count)
                    #expect(String(text.utf8.dropFirst(start))! == lines.suffix(count).joined(separator: "\n") + ending)
                }
                #expect(LogFileResponse.tailStart(handle, size: size, lines: 40) == 0)
                #expect(LogFileResponse.tailStart(handle, size: size, lines: 1000) == 0)
            }
        }
    }
}
