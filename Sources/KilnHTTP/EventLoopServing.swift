import Hummingbird
import HummingbirdCore
import Logging
import NIOCore
import Synchronization

/// Runs each connection on the event loop that reads its socket, instead of on Swift's task
/// pool: a webhook then crosses no thread between its bytes arriving and its answer leaving,
/// but for the database's commit. Routes that may block a thread (files, processes) move to the
/// task pool (``BlockingRoutesOffEventLoops``): a blocked event loop stalls every connection on it.
public struct OnEventLoops<Inner: ServerChildChannel>: ServerChildChannel {
    public typealias Value = Inner.Value
    let inner: Inner

    public init(_ inner: Inner) { self.inner = inner }

    public func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        inner.setup(channel: channel, logger: logger)
    }

    public func handle(value: Value, logger: Logger) async {
        await withTaskExecutorPreference(EventLoopTaskExecutor.of(value.channel.eventLoop)) {
            await inner.handle(value: value, logger: logger)
        }
    }
}

/// An event loop as a task executor: jobs run on the loop's thread.
final class EventLoopTaskExecutor: TaskExecutor {
    private let loop: any EventLoop

    private init(_ loop: any EventLoop) { self.loop = loop }

    /// Each loop's executor, made once and kept: a job holds its executor unowned, and a task
    /// may outlive the connection that gave it its preference.
    private static let executors = Mutex<[ObjectIdentifier: EventLoopTaskExecutor]>([:])

    static func of(_ loop: any EventLoop) -> EventLoopTaskExecutor {
        executors.withLock { executors in
            if let executor = executors[ObjectIdentifier(loop)] { return executor }
            let executor = EventLoopTaskExecutor(loop)
            executors[ObjectIdentifier(loop)] = executor
            return executor
        }
    }

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        loop.execute { job.runSynchronously(on: self.asUnownedTaskExecutor()) }
    }
}

extension HTTPServerBuilder {
    /// HTTP/1 whose connections run on their event loops (``OnEventLoops``).
    public static func onEventLoops<C: ServerChildChannel>(
        _ build: @escaping @Sendable (@escaping HTTPChannelHandler.Responder) -> C
    ) -> HTTPServerBuilder {
        .init { responder in OnEventLoops(build(responder)) }
    }
}

/// Runs every route but the webhooks' on Swift's task pool, its response body too: only intake's
/// path is known never to block a thread, so only it stays on the connection's event loop.
struct BlockingRoutesOffEventLoops<Context: RequestContext>: RouterMiddleware {
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        if request.uri.path.hasPrefix(WebhookController.pathPrefix) { return try await next(request, context) }
        var response = try await withTaskExecutorPreference(globalConcurrentExecutor) { try await next(request, context) }
        let body = response.body
        response.body = ResponseBody(contentLength: body.contentLength) { writer in
            try await withTaskExecutorPreference(globalConcurrentExecutor) { try await body.write(writer) }
        }
        return response
    }
}
