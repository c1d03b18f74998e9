import Synchronization

/// What `/health` reports: whether Kiln can build, and why not.
public final class HealthState: Sendable {
    private let state = Mutex<Readiness>(.notReady("starting: nix has not been checked yet"))

    /// A state that is not ready until the executor is checked.
    public init() {}

    /// The current readiness.
    public var readiness: Readiness { state.withLock { $0 } }

    /// Records the executor check.
    public func update(_ readiness: Readiness) { state.withLock { $0 = readiness } }
}
