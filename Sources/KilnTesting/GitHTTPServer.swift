import Foundation
import Hummingbird
import NIOCore
import Synchronization
import NIOFoundationEssentialsCompat

/// Serves git repositories over smart HTTP on 127.0.0.1 through the real `git http-backend`,
/// behind Basic authentication, and records each request's path and whether it was authorised.
public final class GitHTTPServer: Sendable {
    /// A request as received.
    public struct Received: Sendable, Hashable {
        /// Path and query.
        public var uri: String
        /// Whether the credentials matched.
        public var authorized: Bool
    }

    private let server: TestHTTPServer
    private let received = Mutex<[Received]>([])

    /// Serves the repositories under `root` to user `user` with password `password`.
    public init(root: String, user: String, password: String) async throws {
        let expected = "Basic " + Data("\(user):\(password)".utf8).base64EncodedString()
        let router = Router()
        let box = Box()
        router.on("/**", method: .get) { request, _ in try await box.server!.handle(request, root: root, expected: expected) }
        router.on("/**", method: .post) { request, _ in try await box.server!.handle(request, root: root, expected: expected) }
        server = try await TestHTTPServer.start(router: router)
        box.server = self
    }

    /// `http://127.0.0.1:PORT`.
    public var url: String { "http://127.0.0.1:\(server.port)" }

    /// Requests so far.
    public var requests: [Received] { received.withLock { $0 } }

    /// Stops the server.
    public func stop() async { await server.stop() }

    private final class Box: @unchecked Sendable {
        var server: GitHTTPServer?
    }

    private func handle(_ request: Request, root: String, expected: String) async throws -> Response {
        let authorized = request.headers[.authorization] == expected
        received.withLock { $0.append(Received(uri: request.uri.description, authorized: authorized)) }
        guard authorized else {
            return Response(status: .unauthorized, headers: [.wwwAuthenticate: "Basic realm=\"git\""])
        }
        var request = request
        let body = try await request.collectBody(upTo: 64 << 20)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/git")
        process.arguments = ["http-backend"]
        process.environment = [
            "GIT_PROJECT_ROOT": root, "GIT_HTTP_EXPORT_ALL": "1", "REQUEST_METHOD": request.method.rawValue,
            "PATH_INFO": request.uri.path, "QUERY_STRING": request.uri.query ?? "",
            "CONTENT_TYPE": request.headers[.contentType] ?? "", "CONTENT_LENGTH": String(body.readableBytes),
            "REMOTE_USER": "test", "PATH": "/usr/bin:/bin",
        ]
        let input = Pipe()
        let output = Pipe()
        process.standardInput = input
        process.standardOutput = output
        process.standardError = FileHandle.nullDevice
        try process.run()
        try input.fileHandleForWriting.write(contentsOf: Data(buffer: body))
        try input.fileHandleForWriting.close()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return Self.cgiResponse(data)
    }

    /// Splits CGI output into headers and body.
    private static func cgiResponse(_ data: Data) -> Response {
        let bytes = Array(data)
        var headerEnd = 0
        var bodyStart = bytes.count
        for index in 0..<max(0, bytes.count - 1) {
            if bytes[index] == 0x0A, bytes[index + 1] == 0x0A {
                headerEnd = index
                bodyStart = index + 2
                break
            }
            if index + 3 < bytes.count, bytes[index...index + 3] == [0x0D, 0x0A, 0x0D, 0x0A] {
                headerEnd = index
                bodyStart = index + 4
                break
            }
        }
        var status = HTTPResponse.Status.ok
        var headers = HTTPFields()
        for line in String(decoding: bytes[..<headerEnd], as: UTF8.self).split(whereSeparator: \.isNewline) {
            guard let colon = line.firstIndex(of: ":") else { continue }
            let name = line[..<colon].trimmingCharacters(in: .whitespaces)
            let value = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
            switch name.lowercased() {
            case "status": status = .init(code: Int(value.prefix(3)) ?? 500)
            // The smart protocol needs only the content type; caching headers do not matter here.
            case "content-type": headers[.contentType] = value
            default: break
            }
        }
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: bytes[bodyStart...])))
    }
}
