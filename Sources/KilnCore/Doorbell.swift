import Synchronization

/// Wakes waiting loops when there is new work. Broadcast: one ring wakes every waiter.
///
/// Use the generation to avoid missing a ring between looking for work and waiting:
/// ```
/// let seen = doorbell.generation
/// if let work = try await store.claim() { … } else { await doorbell.wait(after: seen, upTo: .seconds(5)) }
/// ```
public final class Doorbell: Sendable {
    private struct State {
        var generation: UInt64 = 0
        var waiters: [UInt64: CheckedContinuation<Void, Never>] = [:]
        var nextWaiter: UInt64 = 0
    }

    private let state = Mutex(State())

    /// A quiet doorbell.
    public init() {}

    /// How many waiters are suspended now (for tests).
    var waiterCount: Int { state.withLock { $0.waiters.count } }

    /// Increases with every ring.
    public var generation: UInt64 { state.withLock { $0.generation } }

    /// Wakes every waiter.
    public func ring() {
        let waiters = state.withLock { state in
            state.generation &+= 1
            let waiters = state.waiters.values
            state.waiters = [:]
            return Array(waiters)
        }
        for waiter in waiters { waiter.resume() }
    }

    /// Returns when the doorbell rings after generation `seen`, when `timeout` passes,
    /// or when the task is cancelled; at once if it already rang since `seen`.
    public func wait(after seen: UInt64, upTo timeout: Duration) async {
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await self.waitForRing(after: seen) }
            group.addTask { try? await Task.sleep(for: timeout) }
            await group.next()
            group.cancelAll()
        }
    }

    private func waitForRing(after seen: UInt64) async {
        let id = state.withLock { state -> UInt64 in
            state.nextWaiter += 1
            return state.nextWaiter
        }
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let resumeNow = state.withLock { state -> Bool in
                    if state.generation != seen || Task.isCancelled { return true }
                    state.waiters[id] = continuation
                    return false
                }
                if resumeNow { continuation.resume() }
            }
        } onCancel: {
            let waiter = state.withLock { $0.waiters.removeValue(forKey: id) }
            waiter?.resume()
        }
    }
}
