import Foundation
import Hummingbird
import KilnCore
import NIOCore

/// `GET /api/v1/jobs/{id}/log?follow=1&offset=N`: the log from byte `offset` on, and then what
/// the job writes, as it writes it, until the job ends (or Kiln shuts down). A page resumes a
/// dropped stream from the bytes it already has.
enum LogFollow {
    /// How often a followed log is looked at for more.
    static let interval: Duration = .milliseconds(200)

    static func response(
        path: String, offset: String?, job: JobID, store: any BuildQueries, streams: EventStreams
    ) throws -> Response {
        let start: Int
        if let offset {
            guard let value = Int(offset), value >= 0 else { return try JSONBody.error(.badRequest, "'offset' must be a byte offset") }
            start = value
        } else {
            start = 0
        }
        // Followed logs count against server.max-event-streams with the event streams.
        guard streams.hasRoom else {
            var answer = try JSONBody.error(.serviceUnavailable, "too many open streams (server.max-event-streams); try again shortly")
            answer.headers[.retryAfter] = "5"
            return answer
        }
        let body = ResponseBody { writer in
            try await streams.counted {
                var position = start
                var ended = false
                while !streams.closing, !Task.isCancelled {
                    // Whether the job had ended is read before the file: what it wrote before its
                    // end is then surely in the file and sent below.
                    ended = (try? await store.job(job))?.state.isFinal ?? true
                    if let handle = FileHandle(forReadingAtPath: path) {
                        defer { try? handle.close() }
                        let size = Int((try? handle.seekToEnd()) ?? 0)
                        if size > position {
                            try handle.seek(toOffset: UInt64(position))
                            while position < size {
                                let data = try handle.read(upToCount: min(LogFileResponse.chunk, size - position)) ?? Data()
                                if data.isEmpty { break }
                                position += data.count
                                try await writer.write(ByteBuffer(bytes: data))
                            }
                        }
                    }
                    if ended { break }
                    try await Task.sleep(for: interval)
                }
                try await writer.finish(nil)
            }
        }
        return Response(
            status: .ok, headers: [.contentType: "text/plain; charset=utf-8", .cacheControl: "no-cache", .init("X-Accel-Buffering")!: "no"],
            body: body)
    }
}
