import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1

/// Real HTTP requests over a socket, for tests.
public enum HTTPTestClient {
    /// A response.
    public struct Answer: Sendable {
        /// Status code.
        public var status: Int
        /// Body as text.
        public var body: String
        /// Response headers, names lowercased (the last value of a repeated header).
        public var headers: [String: String] = [:]

        /// The body as a JSON object.
        public var json: [String: Any] {
            (try? JSONSerialization.jsonObject(with: Data(body.utf8))) as? [String: Any] ?? [:]
        }
    }

    /// Sends a request and returns the answer.
    public static func send(
        _ method: String, _ url: String, headers: [(name: String, value: String)] = [], body: [UInt8]? = nil
    ) async throws -> Answer {
        var request = HTTPClientRequest(url: url)
        request.method = .init(rawValue: method)
        for header in headers { request.headers.add(name: header.name, value: header.value) }
        if let body { request.body = .bytes(ByteBuffer(bytes: body)) }
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(30))
        let bytes = try await response.body.collect(upTo: 64 << 20)
        var answer = Answer(status: Int(response.status.code), body: String(buffer: bytes))
        for header in response.headers { answer.headers[header.name.lowercased()] = header.value }
        return answer
    }
}
