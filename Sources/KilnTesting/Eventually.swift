import Foundation

/// A condition that did not become true in time.
public struct TimedOut: Error, CustomStringConvertible {
    /// What was awaited.
    public var what: String

    /// Creates the error.
    public init(what: String) { self.what = what }

    public var description: String { "timed out waiting for \(what)" }
}

/// Polls `condition` until it returns a value, or throws `TimedOut` after `deadline`.
/// Tests wait with this, never with a fixed sleep.
public func eventually<T>(
    _ what: String, within deadline: Duration = .seconds(30), every interval: Duration = .milliseconds(20),
    _ condition: () async throws -> T?
) async throws -> T {
    let clock = ContinuousClock()
    let end = clock.now + deadline
    while true {
        if let value = try await condition() { return value }
        if clock.now >= end { throw TimedOut(what: what) }
        try await Task.sleep(for: interval)
    }
}

/// Polls until `condition` is true.
public func eventually(
    _ what: String, within deadline: Duration = .seconds(30), _ condition: () async throws -> Bool
) async throws {
    _ = try await eventually(what, within: deadline) { try await condition() ? true : nil }
}
