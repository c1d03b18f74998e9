import Foundation
import Hummingbird
import KilnCore
import KilnPipeline

/// The cache service: `GET /api/v1/cache` and its page, `/cache`.
struct CacheController: Sendable {
    let keeper: StoreKeeper
    let access: Access

    /// The window when none is asked for, and the longest one.
    static let defaultWindow = Duration.seconds(86400)
    static let maxWindow = Duration.seconds(90 * 86400)

    var endpoints: RouteCollection<BasicRequestContext> {
        let routes = RouteCollection(context: BasicRequestContext.self)
        routes.get("/api/v1/cache") { request, _ in
            switch Self.window(request) {
            case .failure(let bad): return try JSONBody.error(.badRequest, bad.message)
            case .success(let window): return try JSONBody.response(.ok, CacheJSON(try await keeper.statistics(window: window)))
            }
        }
        routes.get("/cache") { request, _ in
            let session = await access.session(request)
            switch Self.window(request) {
            case .failure(let bad): return Pages.html(.badRequest, Pages.message("Bad request", bad.message, session: session))
            case .success(let window):
                let statistics = try await keeper.statistics(window: window)
                return Pages.html(
                    .ok,
                    Pages.render(
                        "cache", title: "Cache · Kiln", Self.values(statistics), session: session,
                        live: "types=cache.warming,cache.warmed", refresh: statistics.warm.state == "warming"))
            }
        }
        return routes
    }

    static func window(_ request: Request) -> Result<Duration, CacheWindowError> {
        guard let text = request.uri.queryParameters.get("window") else { return .success(defaultWindow) }
        guard let window = KilnDuration.parse(text, allowDays: true), window > .zero, window <= maxWindow else {
            return .failure(CacheWindowError(message: "window '\(text)' is not a duration from 1s to 90d, such as 1h, 1d or 30d"))
        }
        return .success(window)
    }

    static func values(_ statistics: CacheStatistics) -> [String: Any] {
        let activity = statistics.activity
        var values: [String: Any] = [
            "window": KilnDuration.format(statistics.window),
            "storePaths": statistics.store.map { "\($0.paths)" } ?? "unknown",
            "storeSize": statistics.store.map { ByteCount.format(Int($0.bytes)) } ?? "unknown",
            "free": statistics.freeBytes.map { ByteCount.format(Int($0)) } ?? "unknown",
            "jobs": activity.jobs, "built": activity.built, "substituted": activity.substituted, "valid": activity.alreadyValid,
            "waited": activity.waitedFor,
            "hitRate": activity.hitRate.map { String(format: "%.1f %%", $0 * 100) } ?? "no jobs",
            "pushes": activity.pushes, "pushed": ByteCount.format(Int(activity.pushedBytes)),
            "kept": statistics.keptBuilds, "keepOutputs": statistics.keepOutputs,
            "warmState": statistics.warm.state, "warmInstallables": statistics.warm.installables,
            "hasWarm": !statistics.warm.installables.isEmpty,
        ]
        if let progress = statistics.warm.progress { values["warmProgress"] = progress.summary }
        if let error = statistics.warm.error { values["warmError"] = error }
        if let cache = statistics.binaryCache {
            var binary: [String: Any] = ["url": cache.url, "measured": cache.measured]
            if let nars = cache.nars { binary["nars"] = nars }
            if let bytes = cache.bytes { binary["size"] = ByteCount.format(Int(bytes)) }
            for (key, entry) in [("oldest", cache.oldest), ("newest", cache.newest)] {
                if let entry { binary[key] = ["path": entry.path, "iso": Pages.iso(entry.cachedAt)] }
            }
            values["binaryCache"] = binary
        }
        return values
    }
}

struct CacheWindowError: Error {
    var message: String
}

/// The cache service's figures in the API.
struct CacheJSON: Encodable {
    struct Store: Encodable {
        var paths: Int?
        var size_bytes: Int64?
        var free_bytes: Int64?
    }
    struct Entry: Encodable {
        var path: String
        var cached_at: Date
    }
    struct BinaryCache: Encodable {
        var url: String
        var measured: Bool
        var nars: Int?
        var size_bytes: Int64?
        var oldest: Entry?
        var newest: Entry?
    }
    struct Derivations: Encodable {
        var built: Int
        var substituted: Int
        var already_valid: Int
        var waited_for: Int
        var hit_rate: Double?
    }
    struct Kept: Encodable {
        var builds: Int
        var keep_outputs: Int
    }
    struct Warm: Encodable {
        var installables: [String]
        var state: String
        var done: Int?
        var expected: Int?
        var error: String?
        var ended_at: Date?
    }

    var window_seconds: Int64
    var store: Store
    var binary_cache: BinaryCache?
    var jobs: Int
    var derivations: Derivations
    var pushes: Int
    var pushed_bytes: Int64
    var kept: Kept
    var warm: Warm

    init(_ statistics: CacheStatistics) {
        window_seconds = statistics.window.components.seconds
        store = Store(paths: statistics.store?.paths, size_bytes: statistics.store?.bytes, free_bytes: statistics.freeBytes)
        binary_cache = statistics.binaryCache.map { cache in
            BinaryCache(
                url: cache.url, measured: cache.measured, nars: cache.nars, size_bytes: cache.bytes,
                oldest: cache.oldest.map { Entry(path: $0.path, cached_at: $0.cachedAt) },
                newest: cache.newest.map { Entry(path: $0.path, cached_at: $0.cachedAt) })
        }
        let activity = statistics.activity
        jobs = activity.jobs
        derivations = Derivations(
            built: activity.built, substituted: activity.substituted, already_valid: activity.alreadyValid,
            waited_for: activity.waitedFor, hit_rate: activity.hitRate)
        pushes = activity.pushes
        pushed_bytes = activity.pushedBytes
        kept = Kept(builds: statistics.keptBuilds, keep_outputs: statistics.keepOutputs)
        warm = Warm(
            installables: statistics.warm.installables, state: statistics.warm.state, done: statistics.warm.progress?.done,
            expected: statistics.warm.progress?.expected, error: statistics.warm.error, ended_at: statistics.warm.endedAt)
    }
}
