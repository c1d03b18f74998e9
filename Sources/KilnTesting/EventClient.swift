import AsyncHTTPClient
import Foundation
import NIOCore
import Synchronization
import NIOHTTP1

/// A server-sent events client for tests: reads a stream in the background and keeps what
/// arrived, parsed, until `close()`.
public final class EventClient: Sendable {
    /// One event as received.
    public struct Received: Sendable, Hashable {
        /// `id:`, when the stream sends ids.
        public var id: Int64?
        /// `event:`, when given.
        public var type: String?
        /// `data:`.
        public var data: String
        /// When it arrived.
        public var at: ContinuousClock.Instant = .now

        /// The data as a JSON object.
        public var json: [String: Any] { (try? JSONSerialization.jsonObject(with: Data(data.utf8))) as? [String: Any] ?? [:] }
    }

    private final class State: Sendable {
        let value = Mutex<(events: [Received], comments: Int, ended: Bool)>(([], 0, false))
    }
    private let box = State()
    private let task = Mutex<Task<Void, Never>?>(nil)

    /// Connects to `url` (`http://…` or `http+unix://<percent-encoded socket path>/…`) with `client`.
    public init(_ url: String, headers: [(String, String)] = [], client: HTTPClient = .shared) {
        let started = Task { [box] in
            var request = HTTPClientRequest(url: url)
            for (name, value) in headers { request.headers.add(name: name, value: value) }
            do {
                let response = try await client.execute(request, timeout: .seconds(600))
                var pending = ""
                for try await chunk in response.body {
                    pending += String(buffer: chunk)
                    while let end = pending.range(of: "\n\n") {
                        let block = String(pending[..<end.lowerBound])
                        pending.removeSubrange(..<end.upperBound)
                        Self.parse(block, into: box)
                    }
                }
            } catch {}
            box.value.withLock { $0.ended = true }
        }
        task.withLock { $0 = started }
    }

    private static func parse(_ block: String, into box: State) {
        var id: Int64?
        var type: String?
        var data: [String] = []
        var comment = false
        for line in block.split(separator: "\n", omittingEmptySubsequences: false) {
            if line.hasPrefix(":") { comment = true }
            else if line.hasPrefix("id: ") { id = Int64(line.dropFirst(4)) }
            else if line.hasPrefix("event: ") { type = String(line.dropFirst(7)) }
            else if line.hasPrefix("data: ") { data.append(String(line.dropFirst(6))) }
        }
        box.value.withLock { state in
            if data.isEmpty {
                if comment { state.comments += 1 }
            } else {
                state.events.append(Received(id: id, type: type, data: data.joined(separator: "\n")))
            }
        }
    }

    /// What arrived so far.
    public var events: [Received] { box.value.withLock { $0.events } }
    /// How many comment blocks (the greeting, keep-alives) arrived.
    public var comments: Int { box.value.withLock { $0.comments } }
    /// Whether the server ended the stream.
    public var ended: Bool { box.value.withLock { $0.ended } }

    /// Stops reading.
    public func close() { task.withLock { $0?.cancel() } }
}
