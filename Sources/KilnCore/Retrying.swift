import Logging

/// Retries a database write that failed (busy, disk full) with backoff, so a passing failure
/// does not leave a build planning or a job running.
enum Retrying {
    /// Runs `write` up to `attempts` times, waiting 0.5 s, 1 s, 2 s… between; rethrows the last error.
    static func write<T: Sendable>(
        _ what: String, attempts: Int = 8, logger: Logger, _ write: () async throws -> T
    ) async throws -> T {
        var delay = Duration.milliseconds(500)
        for attempt in 1... {
            do {
                return try await write()
            } catch {
                guard attempt < attempts, !Task.isCancelled else { throw error }
                logger.warning("\(what) failed; retrying in \(delay)", metadata: ["attempt": "\(attempt)", "error": "\(error)"])
                try? await Task.sleep(for: delay)
                delay = min(delay * 2, .seconds(30))
            }
        }
        fatalError("unreachable")
    }
}
