import Foundation

/// Where jobs' logs are, for everything that reads them (the API, the pages, retention): one
/// place that turns a job and a derivation name into a file, so no caller assembles paths.
public struct JobLogs: Sendable {
    private let paths: WorkerPaths

    /// The logs under a worker's paths.
    public init(_ paths: WorkerPaths) { self.paths = paths }

    /// The job's own log.
    public func log(_ job: JobID) -> String { paths.log(job) }

    /// Derivation names (`<hash>-<name>.drv`) with a log of their own for `job`, sorted.
    public func derivations(_ job: JobID) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: paths.derivationLogs(job))) ?? [])
            .filter { $0.hasSuffix(".drv.log") }.map { String($0.dropLast(4)) }.sorted()
    }

    /// The log of one derivation that `job` built, or why there is none.
    public func derivationLog(_ job: JobID, _ derivation: String) -> Result<String, Missing> {
        guard Self.isDerivationName(derivation) else { return .failure(.invalidName) }
        let path = paths.derivationLogs(job) + "/" + derivation + ".log"
        guard FileManager.default.fileExists(atPath: path) else { return .failure(.notFound) }
        return .success(path)
    }

    /// Why a derivation's log cannot be given.
    public enum Missing: Error, Sendable {
        /// The name is not a derivation's file name (and is never made into a path).
        case invalidName
        /// The job has no log for it.
        case notFound
    }

    /// Whether `name` is a derivation's file name: 32 base-32 characters, '-', a name, '.drv'.
    public static func isDerivationName(_ name: String) -> Bool {
        name.range(of: "^[0-9a-z]{32}-[A-Za-z0-9+._?=-]+\\.drv$", options: .regularExpression) != nil
    }

    /// Removes a job's logs (retention).
    public func remove(_ job: JobID) {
        try? FileManager.default.removeItem(atPath: paths.log(job))
        try? FileManager.default.removeItem(atPath: paths.derivationLogs(job))
    }
}
