import Hummingbird
import HummingbirdCore
import KilnTesting
import NIOCore
import NIOPosix
import Testing

@testable import KilnHTTP

/// Connections run on their event loops; only webhooks are answered there, and everything else
/// (handlers and response bodies, which may block) runs on the task pool.
@Suite struct EventLoopServingTests {
    /// Where the code calling it runs.
    static func place() -> String { MultiThreadedEventLoopGroup.currentEventLoop == nil ? "pool" : "event loop" }

    @Test(.timeLimit(.minutes(1))) func webhooksStayOnTheEventLoopAndEveryOtherRouteLeavesIt() async throws {
        let router = Router()
        router.add(middleware: BlockingRoutesOffEventLoops())
        router.post("/webhooks/:forge") { _, _ in Self.place() }
        router.get("/api/v1/place") { _, _ in Self.place() }
        router.get("/api/v1/streamed") { _, _ in
            Response(status: .ok, body: ResponseBody { writer in
                try await writer.write(ByteBuffer(string: Self.place()))
                try await writer.finish(nil)
            })
        }
        let server = try await TestHTTPServer.start(router: router, server: .onEventLoops { HTTP1Channel(responder: $0) })
        defer { Task { await server.stop() } }
        let base = "http://127.0.0.1:\(server.port)"
        for _ in 0..<3 {
            #expect(try await HTTPTestClient.send("POST", "\(base)/webhooks/github", body: Array("{}".utf8)).body == "event loop")
            #expect(try await HTTPTestClient.send("GET", "\(base)/api/v1/place").body == "pool")
            #expect(try await HTTPTestClient.send("GET", "\(base)/api/v1/streamed").body == "pool")
        }
    }

    @Test func eachLoopKeepsOneExecutor() {
        let loops = Array(MultiThreadedEventLoopGroup.singleton.makeIterator())
        #expect(loops.allSatisfy { EventLoopTaskExecutor.of($0) === EventLoopTaskExecutor.of($0) })
        #expect(Set(loops.map { ObjectIdentifier(EventLoopTaskExecutor.of($0)) }).count == loops.count)
    }
}
