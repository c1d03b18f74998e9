import Foundation
import HTTPTypes
import Logging
import NIOWebSocket
import Synchronization
import WSClient

/// A client of the Iglu Builder socket: sends one job, keeps every answer (with when it came)
/// and the close code.
public enum IgluClient {
    /// What one connection got.
    public struct Session: Sendable {
        /// Each answer's JSON text, and when it arrived.
        public var answers: [(text: String, at: ContinuousClock.Instant)]
        /// The server's close code (1000, 1007, 1011, …); nil when it closed without one.
        public var closeCode: Int?
        /// When the job was sent.
        public var sentAt: ContinuousClock.Instant?

        /// The answers as JSON objects.
        public var objects: [[String: Any]] {
            answers.compactMap { (try? JSONSerialization.jsonObject(with: Data($0.text.utf8))) as? [String: Any] }
        }
    }

    /// Connects to `url` (`ws://…/api/v1/build`) with `token`, sends `job` (when given) and reads
    /// until the server closes.
    public static func run(url: String, token: String?, job: String?, within deadline: Duration = .seconds(90)) async throws -> Session {
        // A server that never closes fails the test at the deadline, saying what it had sent.
        let partial = Partial()
        return try await withThrowingTaskGroup(of: Session?.self) { group in
            group.addTask { try await connect(url: url, token: token, job: job, into: partial) }
            group.addTask {
                try await Task.sleep(for: deadline)
                return nil
            }
            defer { group.cancelAll() }
            guard let session = try await group.next() ?? nil else {
                let sent = partial.state.withLock { $0.answers.map(\.text) }
                throw TimedOut(what: "the Iglu socket to close after \(deadline); it had answered \(sent)")
            }
            return session
        }
    }

    /// What a connection got so far, readable when it times out.
    private final class Partial: Sendable {
        let state = Mutex(Session(answers: []))
    }

    private static func connect(url: String, token: String?, job: String?, into partial: Partial) async throws -> Session {
        var configuration = WebSocketClientConfiguration()
        if let token { configuration.additionalHeaders[.authorization] = "Bearer \(token)" }
        let close = try await WebSocketClient.connect(url: url, configuration: configuration, logger: Logger(label: "iglu-client")) {
            inbound, outbound, _ in
            if let job {
                partial.state.withLock { $0.sentAt = .now }
                try await outbound.write(.text(job))
            }
            for try await message in inbound.messages(maxSize: 1 << 20) {
                if case .text(let text) = message { partial.state.withLock { $0.answers.append((text, .now)) } }
            }
        }
        var session = partial.state.withLock { $0 }
        session.closeCode = close.map { Int(UInt16(webSocketErrorCode: $0.closeCode)) }
        return session
    }
}
