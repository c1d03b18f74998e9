import Foundation
import GRDB
import KilnCore
import Synchronization

/// Group commit for intake: deliveries that arrive while a commit is under way wait for the
/// next one, which writes them all in one transaction. With `synchronous = FULL` every commit
/// waits for the disk, so one wait makes many 202s durable instead of one each.
final class GroupCommit: Sendable {
    private typealias Answer = CheckedContinuation<(buildID: BuildID, isNew: Bool), any Error>
    private struct Waiting: Sendable {
        var delivery: NewDelivery
        var now: Date
        var answer: Answer
    }

    private struct State {
        var queue: [Waiting] = []
        var writing = false
    }

    private let database: any SQLDatabase
    private let state = Mutex(State())
    /// Most deliveries in one transaction.
    static let maxBatch = 512

    init(database: any SQLDatabase) { self.database = database }

    /// Records `delivery` (idempotent on its id) and returns once it is on disk.
    func accept(_ delivery: NewDelivery, at now: Date) async throws -> (buildID: BuildID, isNew: Bool) {
        try await withCheckedThrowingContinuation { (answer: Answer) in
            let lead = state.withLock { state -> Bool in
                state.queue.append(Waiting(delivery: delivery, now: now, answer: answer))
                guard !state.writing else { return false }
                state.writing = true
                return true
            }
            // The first to arrive writes until the queue is empty; the others only wait. The
            // writer is short-lived: it ends as soon as nothing waits.
            guard lead else { return }
            if let sqlite = database as? GRDBDatabase {
                // SQLite writes on a thread of its own, batch after batch, without a hop to the
                // task pool and back around each commit: under load the pool's threads are busy
                // with requests, and every hop made the one writer wait for one of them.
                Self.writers.async { self.drain(sqlite) }
            } else {
                Task { await self.drain() }
            }
        }
    }

    private static let writers = DispatchQueue(label: "kiln.intake", qos: .userInitiated, attributes: .concurrent)

    /// Takes the next batch; marks the writer gone when there is none.
    private func nextBatch() -> [Waiting] {
        state.withLock { state -> [Waiting] in
            let batch = Array(state.queue.prefix(Self.maxBatch))
            state.queue.removeFirst(batch.count)
            if batch.isEmpty { state.writing = false }
            return batch
        }
    }

    private func drain(_ sqlite: GRDBDatabase) {
        while case let batch = nextBatch(), !batch.isEmpty {
            do {
                let results = try sqlite.writeBlocking { db in try SQLStore.insert(batch.map { ($0.delivery, $0.now) }, db) }
                for (waiting, result) in zip(batch, results) { waiting.answer.resume(returning: result) }
            } catch {
                // One delivery's failure must not fail the others': each is written alone.
                for waiting in batch {
                    waiting.answer.resume(with: Result { try sqlite.writeBlocking { db in try SQLStore.insert([(waiting.delivery, waiting.now)], db)[0] } })
                }
            }
        }
    }

    private func drain() async {
        while case let batch = nextBatch(), !batch.isEmpty {
            do {
                let results = try await database.write { db in try SQLStore.insert(batch.map { ($0.delivery, $0.now) }, db) }
                for (waiting, result) in zip(batch, results) { waiting.answer.resume(returning: result) }
            } catch {
                // One delivery's failure must not fail the others': each is written alone.
                for waiting in batch {
                    do {
                        let result = try await database.write { db in try SQLStore.insert([(waiting.delivery, waiting.now)], db)[0] }
                        waiting.answer.resume(returning: result)
                    } catch {
                        waiting.answer.resume(throwing: error)
                    }
                }
            }
        }
    }
}
