import Foundation
import Synchronization

/// Where trusted builds push (`nix.cache.push-to`), as the cache service reads it.
public struct BinaryCacheLocation: Sendable, Hashable {
    /// The URL without credentials, for pages.
    public var display: String
    /// Its directory, for a `file://` cache (read to measure it); nil for others.
    public var directory: String?

    /// Creates a location.
    public init(display: String, directory: String?) {
        self.display = display
        self.directory = directory
    }
}

/// What `GET /api/v1/cache` and the cache page show.
public struct CacheStatistics: Sendable {
    /// The local store: valid paths and their NAR sizes; nil when nix could not say.
    public var store: (paths: Int, bytes: Int64)?
    /// Free space on the store's file system.
    public var freeBytes: Int64?
    /// The binary cache, when one is configured.
    public var binaryCache: BinaryCacheStatistics?
    /// The window `activity` covers.
    public var window: Duration
    /// What jobs did with the store and the cache in it.
    public var activity: CacheActivity
    /// Builds whose outputs are kept as roots, and how many per branch are.
    public var keptBuilds: Int
    /// `storage.keep-outputs`.
    public var keepOutputs: Int
    /// The warm-up (`nix.warm`).
    public var warm: WarmState.Snapshot
}

/// A binary cache's contents.
public struct BinaryCacheStatistics: Sendable, Hashable {
    /// One cached output: its store path, and when it was cached.
    public struct Entry: Sendable, Hashable {
        /// The store path.
        public var path: String
        /// When its narinfo was written.
        public var cachedAt: Date
    }

    /// The URL, without credentials.
    public var url: String
    /// True when read from the cache itself (a `file://` cache); false when only what Kiln
    /// pushed is known (`nars` and `bytes` are then nil).
    public var measured: Bool
    /// narinfo files: store paths the cache holds.
    public var nars: Int?
    /// Bytes of every file in it.
    public var bytes: Int64?
    /// The path cached longest ago, and the latest.
    public var oldest: Entry?
    public var newest: Entry?

    /// Reads a `file://` cache's directory: its narinfo files (one per store path) and the size
    /// of everything in it.
    static func read(_ location: BinaryCacheLocation) -> BinaryCacheStatistics {
        guard let directory = location.directory else { return BinaryCacheStatistics(url: location.display, measured: false) }
        var statistics = BinaryCacheStatistics(url: location.display, measured: true, nars: 0, bytes: 0)
        let fileManager = FileManager.default
        guard let walker = fileManager.enumerator(atPath: directory) else { return statistics }
        while let relative = walker.nextObject() as? String {
            let path = directory + "/" + relative
            guard let attributes = try? fileManager.attributesOfItem(atPath: path), attributes[.type] as? FileAttributeType == .typeRegular
            else { continue }
            statistics.bytes! += (attributes[.size] as? NSNumber)?.int64Value ?? 0
            guard !relative.contains("/"), relative.hasSuffix(".narinfo"), let modified = attributes[.modificationDate] as? Date else { continue }
            statistics.nars! += 1
            let isOldest = statistics.oldest.map { modified < $0.cachedAt } ?? true
            let isNewest = statistics.newest.map { modified > $0.cachedAt } ?? true
            guard isOldest || isNewest, let text = try? String(contentsOfFile: path, encoding: .utf8),
                let line = text.split(whereSeparator: \.isNewline).first(where: { $0.hasPrefix("StorePath: ") })
            else { continue }
            let entry = Entry(path: String(line.dropFirst("StorePath: ".count)), cachedAt: modified)
            if isOldest { statistics.oldest = entry }
            if isNewest { statistics.newest = entry }
        }
        return statistics
    }
}

extension StoreKeeper {
    /// The cache service's figures, over the last `window`.
    public func statistics(window: Duration, now: Date = Date()) async throws -> CacheStatistics {
        // The same figures as /api/v1/statistics: the jobs of the builds that ended in the window.
        let activity = try await coordinator.store.buildStatistics(
            repository: nil, service: nil, since: now.addingTimeInterval(-Double(window.components.seconds))
        ).activity
        let kept = (try? FileManager.default.contentsOfDirectory(atPath: settings.roots))?
            .filter { BuildID($0) != nil && FileManager.default.fileExists(atPath: settings.roots + "/\($0)/done") }.count ?? 0
        let size = await storeSize.value(now: now) {
            (try? await maintenance.storeSize()).map { StoreSize(paths: $0.paths, bytes: $0.bytes) }
        }
        return CacheStatistics(
            store: size.map { ($0.paths, $0.bytes) }, freeBytes: maintenance.freeBytes(), binaryCache: settings.binaryCache.map(BinaryCacheStatistics.read), window: window,
            activity: activity, keptBuilds: kept, keepOutputs: settings.keepOutputs, warm: warmState.current)
    }
}

/// A figure that is costly to measure (every store path, every file of a cache), measured at
/// most once a minute.
final class MinuteCache<Value: Sendable>: Sendable {
    private let cached = Mutex<(at: Date, value: Value)?>(nil)

    func value(now: Date, _ measure: () async -> Value?) async -> Value? {
        if let hit = cached.withLock({ $0 }), now.timeIntervalSince(hit.at) < 60 { return hit.value }
        guard let value = await measure() else { return nil }
        cached.withLock { $0 = (now, value) }
        return value
    }
}

/// A store's path count and NAR size.
struct StoreSize: Sendable {
    var paths: Int
    var bytes: Int64
}

