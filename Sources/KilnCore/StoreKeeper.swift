import Foundation
import KilnPipeline
import Logging
import ServiceLifecycle
import Synchronization

/// What the nix store does for the cache service; `NixStoreMaintenance` is the real one.
public protocol StoreMaintenance: Sendable {
    /// Makes `link` an indirect garbage-collector root of `path`: removing `link` releases it.
    func addRoot(_ path: String, at link: String) async throws
    /// Deletes store paths no root reaches, until about `maxFreed` bytes are freed (all of them
    /// when nil).
    func collectGarbage(maxFreed: Int64?) async throws -> CollectedGarbage
    /// Hard-links identical files in the store; returns the bytes saved.
    func optimise() async throws -> Int64
    /// Realises `installables` (substituted or built, in the sandbox) and keeps them as roots
    /// under `roots`; returns nil, or why it failed.
    func realise(_ installables: [String], roots: String, log: any LogSink, stop: StopSignal) async -> String?
    /// The store's valid paths: how many, and their NAR sizes together.
    func storeSize() async throws -> (paths: Int, bytes: Int64)
    /// Free bytes on the store's file system; nil when unknown.
    func freeBytes() -> Int64?
}

/// What a collection freed.
public struct CollectedGarbage: Sendable, Hashable {
    /// Store paths deleted.
    public var paths: Int
    /// Bytes freed, as nix reports them (to 0.01 MiB).
    public var bytes: Int64

    /// Creates a report.
    public init(paths: Int, bytes: Int64) {
        self.paths = paths
        self.bytes = bytes
    }
}

/// The cache service's housekeeping: the outputs of each branch's last successful builds kept
/// as garbage-collector roots under the data directory, a daily collection down to
/// `storage.min-free`, and `nix.warm` realised at start and daily.
public struct StoreKeeper: Service {
    /// Its settings.
    public struct Settings: Sendable {
        /// Successful builds of each branch whose outputs stay (`storage.keep-outputs`).
        public var keepOutputs: Int
        /// Collect when the store's file system has less free space than this (`storage.min-free`).
        public var minFree: Int64?
        /// Installables realised at start and daily (`nix.warm`).
        public var warm: [String]
        /// Where the roots go (`DATA/gcroots`).
        public var roots: String
        /// Between two rounds of collection and warm-up.
        public var interval: Duration
        /// The binary cache trusted builds push to, when one is configured.
        public var binaryCache: BinaryCacheLocation?

        /// Creates settings.
        public init(
            keepOutputs: Int = 3, minFree: Int64? = nil, warm: [String] = [], roots: String, interval: Duration = .seconds(86400),
            binaryCache: BinaryCacheLocation? = nil
        ) {
            self.binaryCache = binaryCache
            self.keepOutputs = keepOutputs
            self.minFree = minFree
            self.warm = warm
            self.roots = roots
            self.interval = interval
        }
    }

    let coordinator: BuildCoordinator
    let maintenance: any StoreMaintenance
    /// The configured repositories, by forge name and repository name.
    let repositories: [(forge: String, name: String)]
    let settings: Settings
    let logger: Logger
    /// The warm-up's state, for the cache page and API.
    public let warmState: WarmState
    let storeSize = MinuteCache<StoreSize>()

    /// A keeper of `repositories`' outputs.
    public init(
        coordinator: BuildCoordinator, maintenance: any StoreMaintenance, repositories: [(forge: String, name: String)],
        settings: Settings,
        warmState: WarmState = WarmState(), logger: Logger
    ) {
        self.coordinator = coordinator
        self.maintenance = maintenance
        self.repositories = repositories
        self.settings = settings
        self.warmState = warmState
        self.logger = logger
    }

    public func run() async throws {
        await cancelWhenGracefulShutdown {
            await withTaskGroup(of: Void.self) { group in
                group.addTask { await self.keepRootsInStep() }
                group.addTask {
                    while !Task.isCancelled {
                        await self.warmUp()
                        if let minFree = settings.minFree {
                            do {
                                if let freed = try await collect(minFree: minFree) {
                                    logger.info("collected store garbage", metadata: ["paths": "\(freed.paths)", "bytes": "\(freed.bytes)"])
                                }
                            } catch {
                                logger.error("store garbage collection failed: \(error)")
                            }
                        }
                        try? await Task.sleep(for: settings.interval)
                    }
                }
            }
        }
    }

    /// Brings the roots in step at start, then after every build that ends.
    private func keepRootsInStep() async {
        var seen = (try? await coordinator.store.eventRange()?.upperBound) ?? 0
        while !Task.isCancelled {
            do {
                try await syncRoots()
            } catch {
                logger.error("could not keep build outputs as roots: \(error)")
            }
            // Wait for a build's end, looking at most once a second: every delivery rings the
            // events bell, and a look for each would compete with intake for the database.
            while !Task.isCancelled {
                let looked = ContinuousClock.now
                let generation = coordinator.bells.events.generation
                // What the log held before looking: if none of it is a build's end, the next look
                // starts after it, so each ring reads only the events since the last (not every
                // event since the last build ended, which grows without bound while builds queue).
                let newest = try? await coordinator.store.eventRange()?.upperBound
                let ended = (try? await coordinator.store.events(after: seen, filter: EventQuery(types: ["build.finished"]), limit: 100)) ?? []
                if let last = ended.last {
                    seen = last.id
                    break
                }
                if let newest { seen = max(seen, newest) }
                await coordinator.bells.events.wait(after: generation, upTo: .seconds(60))
                try? await Task.sleep(until: looked + .seconds(1))
            }
        }
    }

    /// Makes the roots directory hold exactly the outputs of each configured repository's
    /// branches' last `keepOutputs` successful builds: one directory per build, one link per
    /// output. Returns how many builds' roots were added and removed.
    @discardableResult
    public func syncRoots() async throws -> (added: Int, removed: Int) {
        let store = coordinator.store
        var kept: Set<BuildID> = []
        for repository in repositories where settings.keepOutputs > 0 {
            for branch in try await store.branches(forge: repository.forge, repository: repository.name) {
                guard case .branch(let name)? = GitRef(fullName: branch.ref) else { continue }
                let query = BuildListQuery(
                    forge: repository.forge, repository: repository.name, branch: name, state: .succeeded, limit: settings.keepOutputs)
                for build in try await store.builds(query) { kept.insert(build.id) }
            }
        }
        let fileManager = FileManager.default
        try fileManager.createDirectory(atPath: settings.roots, withIntermediateDirectories: true)
        let directories = Set((try fileManager.contentsOfDirectory(atPath: settings.roots)).compactMap { BuildID($0) })
        // A build's directory is complete once it has its `done` mark; one without (Kiln stopped
        // while making it) is made again. It cannot be made elsewhere and moved: nix's indirect
        // roots name the link's path.
        let complete = directories.filter { fileManager.fileExists(atPath: settings.roots + "/\($0)/done") }
        var added = 0
        for id in kept.subtracting(complete).sorted() {
            guard let details = try await store.buildDetails(id) else { continue }
            let directory = settings.roots + "/\(id)"
            do {
                try fileManager.createDirectory(atPath: directory, withIntermediateDirectories: true)
                for job in details.jobs {
                    for output in job.outputs {
                        try await maintenance.addRoot(output.path, at: directory + "/\(job.id)-\(output.name)")
                    }
                }
                fileManager.createFile(atPath: directory + "/done", contents: nil)
                added += 1
            } catch {
                // One build whose outputs are gone (collected before Kiln kept them) keeps no
                // other build from its roots; it is tried again at the next sync.
                logger.warning("could not keep build #\(id)'s outputs as roots: \(error)")
            }
        }
        let removed = directories.subtracting(kept)
        for id in removed { try fileManager.removeItem(atPath: settings.roots + "/\(id)") }
        return (added, removed.count)
    }

    /// Collects garbage when free space is below `minFree`, freeing the difference; nil when
    /// there was enough.
    public func collect(minFree: Int64) async throws -> CollectedGarbage? {
        guard let free = maintenance.freeBytes(), free < minFree else { return nil }
        return try await maintenance.collectGarbage(maxFreed: minFree - free)
    }

    /// Realises `nix.warm`, saying how it goes on the cache page and in the events.
    public func warmUp() async {
        guard !settings.warm.isEmpty else { return }
        warmState.begin(settings.warm)
        await coordinator.note(KilnEvent(type: "cache.warming", buildID: nil, repository: nil, fields: ["installables": settings.warm]))
        let log = WarmLog(state: warmState)
        let started = ContinuousClock.now
        let problem = await maintenance.realise(settings.warm, roots: settings.roots + "/warm", log: log, stop: StopSignal())
        let seconds = (ContinuousClock.now - started).components.seconds
        warmState.end(problem)
        var fields: [String: Any] = ["installables": settings.warm, "outcome": problem == nil ? "succeeded" : "failed", "duration_seconds": seconds]
        if let problem {
            fields["error"] = problem
            logger.error("warming the store failed: \(problem)")
        }
        await coordinator.note(KilnEvent(type: "cache.warmed", buildID: nil, repository: nil, fields: fields))
    }
}

/// How the warm-up goes: shown on the cache page and in the API.
public final class WarmState: Sendable {
    /// A moment of it.
    public struct Snapshot: Sendable, Hashable {
        /// What is warmed.
        public var installables: [String] = []
        /// `idle`, `warming`, `succeeded` or `failed`.
        public var state = "idle"
        /// nix's progress, while it runs.
        public var progress: JobProgress?
        /// Why it failed.
        public var error: String?
        /// When the last one ended.
        public var endedAt: Date?
    }

    private let snapshot = Mutex(Snapshot())

    /// A state that has not begun.
    public init() {}

    /// The state now.
    public var current: Snapshot { snapshot.withLock { $0 } }

    func begin(_ installables: [String]) {
        snapshot.withLock {
            $0.installables = installables
            $0.state = "warming"
            $0.progress = nil
            $0.error = nil
        }
    }

    func update(_ progress: JobProgress) { snapshot.withLock { $0.progress = progress } }

    func end(_ problem: String?) {
        snapshot.withLock {
            $0.state = problem == nil ? "succeeded" : "failed"
            $0.error = problem
            $0.endedAt = Date()
        }
    }
}

/// The warm-up's log: its progress goes to the state; its text to nowhere (the events say how it ended).
private struct WarmLog: LogSink {
    let state: WarmState
    func write(_ chunk: [UInt8]) {}
    func progress(_ progress: JobProgress) { state.update(progress) }
}
