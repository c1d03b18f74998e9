import Foundation
import Hummingbird
import NIOCore

/// A log file sent from disk in chunks, never read whole into memory: all of it, its last
/// `tail` lines (`?tail=N`), or one byte range (`Range: bytes=…`, answered 206).
enum LogFileResponse {
    /// Bytes read and sent at a time.
    static let chunk = 64 << 10
    /// Most lines `?tail=` may ask for.
    static let maxTailLines = 100_000

    /// Which part of a file of `size` bytes to send.
    enum Part: Equatable {
        case whole
        case range(ClosedRange<Int>)
        case unsatisfiable
    }

    /// The response for the log at `path`, given the request's `tail` parameter and `Range` header.
    static func response(path: String, tail: String?, range: String?) throws -> Response {
        guard let handle = FileHandle(forReadingAtPath: path) else { return try JSONBody.error(.notFound, "this job has no log yet") }
        let size = Int((try? handle.seekToEnd()) ?? 0)
        var headers: HTTPFields = [.contentType: "text/plain; charset=utf-8", .acceptRanges: "bytes"]
        var status = HTTPResponse.Status.ok
        var bytes = 0..<size
        if let tail {
            guard let lines = Int(tail), (1...maxTailLines).contains(lines) else {
                try? handle.close()
                return try JSONBody.error(.badRequest, "'tail' must be a number of lines from 1 to \(maxTailLines)")
            }
            bytes = tailStart(handle, size: size, lines: lines)..<size
        } else if let range {
            switch parse(range, size: size) {
            case .whole: break
            case .range(let closed):
                bytes = closed.lowerBound..<(closed.upperBound + 1)
                status = .partialContent
                headers[.contentRange] = "bytes \(closed.lowerBound)-\(closed.upperBound)/\(size)"
            case .unsatisfiable:
                try? handle.close()
                return Response(status: .rangeNotSatisfiable, headers: [.contentRange: "bytes */\(size)"])
            }
        }
        let sent = bytes
        let body = ResponseBody(contentLength: sent.count) { writer in
            defer { try? handle.close() }
            try handle.seek(toOffset: UInt64(sent.lowerBound))
            var remaining = sent.count
            while remaining > 0 {
                let data = try handle.read(upToCount: min(chunk, remaining)) ?? Data()
                if data.isEmpty { break }
                remaining -= data.count
                try await writer.write(ByteBuffer(bytes: data))
            }
            try await writer.finish(nil)
        }
        return Response(status: status, headers: headers, body: body)
    }

    /// One `bytes=` range of RFC 9110 (`a-b`, `a-`, `-n`) over `size` bytes. Several ranges, or
    /// another unit, are answered with the whole file, as the RFC allows.
    static func parse(_ header: String, size: Int) -> Part {
        let value = header.trimmingCharacters(in: .whitespaces)
        guard value.hasPrefix("bytes="), !value.contains(",") else { return .whole }
        let spec = value.dropFirst(6).split(separator: "-", maxSplits: 1, omittingEmptySubsequences: false)
        guard spec.count == 2 else { return .whole }
        let first = spec[0].isEmpty ? nil : Int(spec[0])
        let last = spec[1].isEmpty ? nil : Int(spec[1])
        if !spec[0].isEmpty && first == nil || !spec[1].isEmpty && last == nil { return .whole }
        switch (first, last) {
        case (let start?, let end):
            guard start < size, end.map({ $0 >= start }) ?? true else { return .unsatisfiable }
            return .range(start...min(end ?? size - 1, size - 1))
        case (nil, let suffix?):
            guard suffix > 0, size > 0 else { return .unsatisfiable }
            return .range(max(0, size - suffix)...(size - 1))
        case (nil, nil):
            return .whole
        }
    }

    /// The offset where the last `lines` lines of the file begin, found by reading backwards.
    static func tailStart(_ handle: FileHandle, size: Int, lines: Int) -> Int {
        var newlines = 0
        var position = size
        // A final newline ends the last line; it does not start another.
        var skipLast = true
        while position > 0 {
            let start = max(0, position - chunk)
            guard (try? handle.seek(toOffset: UInt64(start))) != nil,
                let data = try? handle.read(upToCount: position - start)
            else { return 0 }
            let bytes = [UInt8](data)
            for index in stride(from: bytes.count - 1, through: 0, by: -1) where bytes[index] == 0x0A {
                if skipLast && start + index == size - 1 {
                    skipLast = false
                    continue
                }
                newlines += 1
                if newlines == lines { return start + index + 1 }
            }
            skipLast = false
            position = start
        }
        return 0
    }
}
