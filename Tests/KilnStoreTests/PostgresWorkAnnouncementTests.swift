import Foundation
import KilnCore
import KilnPipeline
import KilnTesting
import Logging
import Synchronization
import Testing

@testable import KilnStore

/// Instances on one PostgreSQL database wake each other: a change committed through one store
/// reaches the other's listener (NOTIFY at the commit); reads and lease renewals announce nothing.
@Suite struct PostgresWorkAnnouncementTests {
    @Test(.timeLimit(.minutes(1))) func aDeliveryThroughOneInstanceWakesTheOther() async throws {
        let server = try await PostgresServer.shared()
        let location = PostgresLocation(host: "127.0.0.1", port: server.port, username: "postgres", database: try await server.newDatabase())
        let logger = Logger(label: "announce")
        let listening = try await SQLStore.postgres(location, logger: logger)
        let writing = try await SQLStore.postgres(location, logger: logger)
        let wakes = Atomic<Int>(0)
        let listener = Task { await listening.listenForWork { wakes.add(1, ordering: .relaxed) } }
        defer { listener.cancel() }
        // The first wake says the listener is up (work announced before it is found by a look).
        try await eventually("the listener to start", within: .seconds(20)) { wakes.load(ordering: .relaxed) >= 1 }
        let repository = try await writing.syncRepositories([("github", "octo/hello")])[0]
        _ = try await writing.renewLeases(at: Date())
        _ = try await writing.recentBuilds(limit: 5)
        let quiet = wakes.load(ordering: .relaxed)
        _ = try await writing.accept(
            NewDelivery(forge: "github", deliveryID: "d1", repositoryID: repository, repository: "octo/hello", ref: .branch("main"),
                sha: String(repeating: "a", count: 40)), at: Date())
        try await eventually("the other instance to be woken", within: .seconds(20)) { wakes.load(ordering: .relaxed) > quiet }
        #expect(quiet == 1, "reads and lease renewals announce nothing")
        listener.cancel()
        _ = await listener.value
        await listening.close()
        await writing.close()
    }
}
