import Foundation
import HTTPTypes
import Hummingbird
import KilnCore
import NIOCore
import ServiceLifecycle
import Synchronization

/// Server-sent events from the event log: `GET /api/v1/events` (every type, with ids, so a
/// client resumes with `Last-Event-ID`), and Determinate Nixd's `GET /events` on the events
/// socket (post-build events only, `data:` lines only).
///
/// Each stream reads the log itself, from its own position, when the events doorbell rings: a
/// slow client holds no buffer of anyone else's and slows no one. One that falls more than
/// `maxBehind` events (as many as the log keeps) behind its head while it reads full batches is
/// ended with `event: overflow`; one resuming from an id the log no longer holds (or never held)
/// is told with `event: reset`.
enum EventStream {
    /// How far a client may fall behind before its stream ends.
    static let maxBehind: Int64 = 100_000
    /// A comment line at least this often, so that proxies keep the connection.
    static let keepAlive: Duration = .seconds(15)

    /// The API's stream: `?repository=`, `?build=`, `?types=a,b`, and `Last-Event-ID` (header, or `?last-event-id=`).
    static func api(_ request: Request, _ log: any EventLog, streams: EventStreams) throws -> Response {
        let query = request.uri.queryParameters
        var filter = EventQuery(repository: query.get("repository"))
        if let build = query.get("build") {
            guard let id = BuildID(build) else { return try JSONBody.error(.badRequest, "'build' must be a build id") }
            filter.build = id
        }
        if let types = query.get("types") {
            let asked = Set(types.split(separator: ",").map { String($0).trimmingCharacters(in: .whitespaces) })
            let unknown = asked.subtracting(KilnEvent.types)
            guard unknown.isEmpty else {
                return try JSONBody.error(
                    .badRequest, "unknown event types \(unknown.sorted().joined(separator: ", ")); known: \(KilnEvent.types.sorted().joined(separator: ", "))")
            }
            filter.types = asked
        }
        let resume = request.headers[HTTPField.Name("Last-Event-ID")!] ?? query.get("last-event-id")
        var cursor: Int64?
        if let resume {
            guard let id = Int64(resume), id >= 0 else { return try JSONBody.error(.badRequest, "Last-Event-ID must be an event id") }
            cursor = id
        }
        let (chosen, start) = (filter, cursor)
        return try response(streams) { writer in
            try await stream(log, streams: streams, filter: chosen, from: start, writer: &writer, withIDs: true)
        }
    }

    /// Determinate Nixd's stream: post-build events only, as bare `data:` lines, from now on.
    static func postBuild(_ log: any EventLog, streams: EventStreams) throws -> Response {
        try response(streams) { writer in
            try await stream(
                log, streams: streams, filter: EventQuery(types: KilnEvent.postBuildTypes), from: nil, writer: &writer,
                withIDs: false)
        }
    }

    private static func response(
        _ streams: EventStreams, _ body: @escaping @Sendable (inout any ResponseBodyWriter) async throws -> Void
    ) throws -> Response {
        guard streams.hasRoom else {
            var refused = try JSONBody.error(
                .serviceUnavailable, "\(streams.limit) event streams are open (server.max-event-streams); try again shortly")
            refused.headers[.retryAfter] = "5"
            return refused
        }
        var headers = HTTPFields()
        headers[.contentType] = "text/event-stream"
        headers[.cacheControl] = "no-cache"
        return Response(status: .ok, headers: headers, body: ResponseBody { writer in
            try await streams.counted { try await body(&writer) }
            try await writer.finish(nil)
        })
    }

    private static func stream(
        _ log: any EventLog, streams: EventStreams, filter: EventQuery, from resume: Int64?,
        writer: inout any ResponseBodyWriter, withIDs: Bool
    ) async throws {
        let bell = streams.bell
        let range = try await log.eventRange()
        var cursor: Int64
        if let resume {
            cursor = resume
            // What followed `resume` is gone (pruned), or the log never held it (a restored database).
            let gone = range.map { resume < $0.lowerBound - 1 || resume > $0.upperBound } ?? (resume > 0)
            if gone {
                try await writer.write(text("event: reset\ndata: {\"oldest\":\(range?.lowerBound ?? 0)}\n\n"))
                if let range, resume > range.upperBound { cursor = range.upperBound }
            }
        } else {
            cursor = range?.upperBound ?? 0
        }
        // Comments and events tell the client the stream is open at once.
        try await writer.write(text(": kiln events\n\n"))
        var lastWrite = ContinuousClock.now
        while !Task.isCancelled, !streams.closing {
            let seen = bell.generation
            let head = try await log.eventRange()?.upperBound ?? cursor
            let events = try await log.events(after: cursor, filter: filter, limit: 500)
            // Behind by a full batch, and by more than the log keeps: this client does not keep up.
            if events.count == 500, head - cursor > maxBehind {
                try await writer.write(text("event: overflow\ndata: {\"behind\":\(head - cursor)}\n\n"))
                return
            }
            if !events.isEmpty {
                var chunk = ""
                for stored in events {
                    chunk += withIDs
                        ? "id: \(stored.id)\nevent: \(stored.event.type)\ndata: \(stored.event.data)\n\n"
                        : "data: \(Self.determinate(stored.event.data))\n\n"
                    cursor = stored.id
                }
                try await writer.write(text(chunk))
                lastWrite = .now
            }
            guard events.count < 500 else { continue }
            // Everything up to `head` that passes the filter has been sent: skip what it left out.
            cursor = max(cursor, head)
            if ContinuousClock.now - lastWrite >= keepAlive {
                try await writer.write(text(":\n\n"))
                lastWrite = .now
            }
            await bell.wait(after: seen, upTo: max(.milliseconds(100), keepAlive - (ContinuousClock.now - lastWrite)))
        }
    }

    /// A post-build event in exactly Determinate Nixd's shape: `v`, `c`, `drv`, `outputs`.
    static func determinate(_ data: String) -> String {
        guard let object = try? JSONSerialization.jsonObject(with: Data(data.utf8)) as? [String: Any] else { return data }
        var kept: [String: Any] = [:]
        for key in ["v", "c", "drv", "outputs"] { kept[key] = object[key] }
        guard let encoded = try? JSONSerialization.data(withJSONObject: kept, options: [.sortedKeys, .withoutEscapingSlashes]) else {
            return data
        }
        return String(decoding: encoded, as: UTF8.self)
    }

    private static func text(_ string: String) -> ByteBuffer { ByteBuffer(string: string) }
}

/// The open event streams' shared state: the doorbell they wait on, and whether Kiln is shutting
/// down. As a service listed after the HTTP servers it is told of the shutdown first, and ends
/// every stream, so the servers need not wait for the streams' clients to hang up.
public final class EventStreams: Service, Sendable {
    /// Rung when events are appended.
    public let bell: Doorbell
    /// Streams open at once, at most (`server.max-event-streams`); more get 503.
    public let limit: Int
    private let closed = Mutex(false)
    private let open = Mutex(0)

    /// Streams woken by `bell`, at most `limit` at once.
    public init(bell: Doorbell, limit: Int = 1000) {
        self.bell = bell
        self.limit = limit
    }

    /// Whether the streams must end.
    var closing: Bool { closed.withLock { $0 } }

    /// Streams open now, on the API and the socket together.
    public var openCount: Int { open.withLock { $0 } }

    /// Whether another stream may open. (Counted while streams run, so that a stream whose
    /// response never started takes nothing away; a burst may pass the limit by a few.)
    var hasRoom: Bool { open.withLock { $0 < limit } }

    /// Runs one stream, counted.
    func counted(_ body: () async throws -> Void) async rethrows {
        open.withLock { $0 += 1 }
        defer { open.withLock { $0 -= 1 } }
        try await body()
    }

    public func run() async throws {
        try? await gracefulShutdown()
        closed.withLock { $0 = true }
        bell.ring()
    }
}
