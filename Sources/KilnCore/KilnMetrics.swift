import CoreMetrics
import Foundation
import Synchronization

/// Kiln's metrics, through swift-metrics over the factory it is given (Prometheus in the server,
/// nothing in `kiln run` and most tests). Labels come only from bounded sets: forge type, event
/// kind, outcome, a known nix system, a derivation's fate. Never a repository, branch, SHA or URL.
public final class KilnMetrics: Sendable {
    /// Job and queue durations: 0.1 s to a day.
    public static let durationBuckets: [Duration] = [
        .milliseconds(100), .milliseconds(500), .seconds(1), .seconds(5), .seconds(15), .seconds(30), .seconds(60),
        .seconds(300), .seconds(900), .seconds(1800), .seconds(3600), .seconds(3 * 3600), .seconds(6 * 3600), .seconds(86400),
    ]
    /// Output sizes (NAR bytes): 1 KiB to 16 GiB.
    public static let byteBuckets: [Double] = (0...12).map { pow(4, Double($0)) * 1024 }
    /// The systems a `system` label may name; others count as `other`.
    static let systems: Set<String> = [
        "x86_64-linux", "aarch64-linux", "i686-linux", "armv7l-linux", "riscv64-linux", "x86_64-darwin", "aarch64-darwin",
    ]

    private let factory: (any MetricsFactory)?
    private let forgeTypes: [String: String]
    private let counters = Mutex<[String: Counter]>([:])

    /// Metrics recorded through `factory` (nil records nothing); `forgeTypes` gives each
    /// configured forge's type by its name, so that labels never carry the name itself.
    public init(factory: (any MetricsFactory)?, forgeTypes: [String: String] = [:]) {
        self.factory = factory
        self.forgeTypes = forgeTypes
    }

    /// Records nothing (`kiln run`, tests).
    public static let none = KilnMetrics(factory: nil)

    /// The type of the forge configured as `name`; `unknown` for a name not configured.
    func forgeType(_ name: String) -> String { forgeTypes[name] ?? "unknown" }

    /// A webhook delivery to forge `forge` (by name): the event's kind and what intake made of it.
    public func webhook(forge: String, event: String, outcome: String) {
        count("kiln_webhook_deliveries_total", [("forge", forgeType(forge)), ("event", event), ("outcome", outcome)])
    }

    /// What a change did to a build: its end, its jobs' starts and ends.
    func observe(_ before: BuildDetails?, _ after: BuildDetails) {
        if after.build.state.isFinal, before?.build.state.isFinal != true { buildEnded(after.build.state) }
        let earlier = Dictionary((before?.jobs ?? []).map { ($0.id, $0.state) }, uniquingKeysWith: { first, _ in first })
        for job in after.jobs where job.state.isFinal && earlier[job.id]?.isFinal == false {
            jobEnded(job)
        }
    }

    /// A build reached its final state.
    public func buildEnded(_ state: BuildState) {
        count("kiln_builds_total", [("outcome", state.rawValue)])
    }

    /// A job started after waiting `wait` in the queue.
    public func jobStarted(waited wait: TimeInterval) {
        guard let factory else { return }
        Timer(label: "kiln_job_queue_wait_seconds", dimensions: [], factory: factory).recordSeconds(max(0, wait))
    }

    /// A job ended: its outcome, how long it ran, what it built and what its outputs weigh.
    public func jobEnded(_ job: JobRecord) {
        let system = job.system.map { Self.systems.contains($0) ? $0 : "other" } ?? "host"
        count("kiln_jobs_total", [("outcome", job.state.rawValue), ("system", system)])
        guard let factory else { return }
        if let started = job.startedAt, let finished = job.finishedAt {
            Timer(label: "kiln_job_duration_seconds", dimensions: [], factory: factory)
                .recordSeconds(max(0, finished.timeIntervalSince(started)))
        }
        for output in job.outputs {
            guard let size = output.narSize else { continue }
            Recorder(label: "kiln_output_bytes", dimensions: [], aggregate: true, factory: factory).record(size)
        }
    }

    /// What a job's derivations came to: built here, substituted from a cache, or already valid.
    public func derivations(_ report: JobReport) {
        let built = Set(report.built)
        let waited = Set(report.waitedFor)
        let cached = report.derivations.filter { !built.contains($0) && !waited.contains($0) }.count
        count("kiln_derivations_total", [("how", "built")], by: built.count)
        count("kiln_derivations_total", [("how", "substituted")], by: report.substituted)
        count("kiln_derivations_total", [("how", "cached")], by: cached)
        if let image = report.image { count("kiln_image_pushes_total", [("outcome", image.outcome.rawValue)]) }
        if let cache = report.cache {
            count("kiln_cache_pushes_total", [("outcome", cache.outcomeLabel)])
        }
    }

    /// What posting a status to forge `forge` (by name) came to.
    public func statusPost(forge: String, _ result: StatusDeliveryResult) {
        let outcome: String
        switch result {
        case .delivered: outcome = "delivered"
        case .recorded: outcome = "recorded"
        case .retry: outcome = "retried"
        case .dropped: outcome = "dropped"
        }
        count("kiln_status_posts_total", [("forge", forgeType(forge)), ("outcome", outcome)])
    }

    /// One reconcile pass over a repository of forge `forge` (by name): `ok` or `failed`, and
    /// how many builds it queued for heads whose webhook never arrived.
    public func reconciled(forge: String, outcome: String, builds: Int) {
        count("kiln_reconcile_passes_total", [("forge", forgeType(forge)), ("outcome", outcome)])
        count("kiln_reconciled_builds_total", [("forge", forgeType(forge))], by: builds)
    }

    /// Sets a gauge (queue lengths and the like, read when metrics are scraped).
    public func gauge(_ label: String, _ value: Double, _ dimensions: [(String, String)] = []) {
        guard let factory else { return }
        Gauge(label: label, dimensions: dimensions, factory: factory).record(value)
    }

    private func count(_ label: String, _ dimensions: [(String, String)], by amount: Int = 1) {
        guard let factory, amount > 0 else { return }
        let key = label + dimensions.map { "\u{0}\($0.0)=\($0.1)" }.joined()
        let counter = counters.withLock { counters in
            if let counter = counters[key] { return counter }
            let counter = Counter(label: label, dimensions: dimensions, factory: factory)
            counters[key] = counter
            return counter
        }
        counter.increment(by: amount)
    }
}
