import Hummingbird
import HummingbirdCore
import Logging
import ServiceLifecycle

/// A Hummingbird server on 127.0.0.1 with a free port, for fakes.
public final class TestHTTPServer: Sendable {
    /// The bound port.
    public let port: Int
    private let group: ServiceGroup
    private let task: Task<Void, any Error>

    private init(port: Int, group: ServiceGroup, task: Task<Void, any Error>) {
        self.port = port
        self.group = group
        self.task = task
    }

    /// Starts `router` and returns once it accepts connections.
    public static func start(router: Router<BasicRequestContext>, server: HTTPServerBuilder = .http1()) async throws -> TestHTTPServer {
        var logger = Logger(label: "fake-forge")
        logger.logLevel = .warning
        let (ports, continuation) = AsyncStream.makeStream(of: Int.self)
        let application = Application(
            router: router, server: server, configuration: .init(address: .hostname("127.0.0.1", port: 0)),
            onServerRunning: { channel in
                continuation.yield(channel.localAddress?.port ?? 0)
                continuation.finish()
            }, logger: logger)
        let group = ServiceGroup(services: [application], logger: logger)
        let task = Task { try await group.run() }
        guard let port = await ports.first(where: { _ in true }) else {
            throw TimedOut(what: "the test server to listen")
        }
        return TestHTTPServer(port: port, group: group, task: task)
    }

    /// Shuts the server down.
    public func stop() async {
        await group.triggerGracefulShutdown()
        _ = try? await task.value
    }
}
