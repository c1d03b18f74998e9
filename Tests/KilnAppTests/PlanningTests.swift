import Foundation
import KilnCore
import KilnPipeline
import KilnStore
import KilnTesting
import Logging
import Synchronization
import Testing

/// Planning as the worker does it, over a source whose fetches the test controls.
@Suite struct PlanningTests {
    /// A source with one commit per repository; fetches of repository 1 wait until `release()`.
    final class ScriptedSource: SourceProvider {
        let calls = Mutex<[String]>([])
        let gate = Mutex<CheckedContinuation<Void, Never>?>(nil)
        let released = Mutex(false)
        let holdRepository: RepositoryID?

        init(hold repository: RepositoryID? = nil) { holdRepository = repository }

        func release() {
            released.withLock { $0 = true }
            gate.withLock { gate in
                defer { gate = nil }
                return gate
            }?.resume()
        }

        private func record(_ call: String, _ repository: Repository) async {
            calls.withLock { $0.append("\(call) \(repository.id)") }
            guard repository.id == holdRepository, !released.withLock({ $0 }) else { return }
            await withCheckedContinuation { continuation in
                let resumeNow = gate.withLock { gate -> Bool in
                    if released.withLock({ $0 }) { return true }
                    gate = continuation
                    return false
                }
                if resumeNow { continuation.resume() }
            }
        }

        func fetch(_ repository: Repository, ref: String) async throws(SourceError) -> String {
            await record("fetch", repository)
            return PlanningTests.sha(repository.id)
        }
        func fetchPullRequest(_ repository: Repository, _ pullRequest: PullRequestInfo) async throws(SourceError) -> String {
            await record("fetch-pull-request", repository)
            return PlanningTests.sha(repository.id)
        }
        func resolve(_ repository: Repository, commit prefix: String) async throws(SourceError) -> String? { prefix }
        func readFile(_ repository: Repository, sha: String, path: String, maxBytes: Int) async throws(SourceError)
            -> FileAtCommit
        { .contents(Array("jobs: {}\n".utf8)) }
        func commitFacts(_ repository: Repository, sha: String, comparedTo before: String?) async throws(SourceError)
            -> CommitFacts
        { CommitFacts(message: "change", tree: String(repeating: "t", count: 40), changedFiles: nil) }
        func merge(_ repository: Repository, base: String, head: String) async throws(SourceError) -> MergeResult {
            .merged(head)
        }
        func isDescendant(_ repository: Repository, _ commit: String, of ancestor: String) async throws(SourceError) -> Bool {
            false
        }
        func mergeBase(_ repository: Repository, _ a: String, _ b: String) async throws(SourceError) -> String? { a }
        func checkout(_ repository: Repository, sha: String, into directory: String) async throws(SourceError) {}
    }

    /// An executor that is ready and builds nothing.
    struct IdleExecutor: Executor {
        func readiness() async -> Readiness { .ready("idle") }
        func run(_ job: JobRun, log: any LogSink, stop: StopSignal) async -> JobReport {
            JobReport(outcome: .succeeded, duration: .zero)
        }
        func evaluate(_ request: EvaluationRequest, log: any LogSink, stop: StopSignal) async -> EvaluationReport {
            EvaluationReport(results: [:], summary: "idle", duration: .zero)
        }
        func endLeftoverProcesses() async -> Int { 0 }
    }

    static func sha(_ repository: RepositoryID) -> String { String(repeating: "\(repository % 10)", count: 40) }

    /// Runs a worker over two repositories until `body` returns.
    func withWorker(
        _ source: ScriptedSource, _ body: (SQLStore, [RepositoryID], Doorbells) async throws -> Void
    ) async throws {
        try await withTemporaryDirectory("kiln-planning") { directory in
            let store = try SQLStore(path: directory.appending("kiln.sqlite"))
            let ids = try await store.syncRepositories([("github", "octo/one"), ("github", "octo/two")])
            var repositories: [RepositoryID: Repository] = [:]
            for (id, name) in zip(ids, ["octo/one", "octo/two"]) {
                repositories[id] = Repository(id: id, name: name, cloneURL: "file:///nowhere")
            }
            let coordinator = BuildCoordinator(store: store, logger: Logger(label: "test"))
            let bells = coordinator.bells
            let worker = BuildWorker(
                coordinator: coordinator, source: source, executor: IdleExecutor(), repositories: repositories,
                settings: WorkerSettings(
                    limits: JobLimits(defaultTimeout: .seconds(60), maxTimeout: .seconds(60), defaultMaxSilent: .seconds(60)),
                    maxParallelJobs: 1, logCapBytes: 1 << 20, paths: WorkerPaths(dataDirectory: directory.path)),
                health: HealthState(), progress: ProgressBoard(), logger: Logger(label: "test"))
            let task = Task { try await worker.run() }
            defer { task.cancel() }
            try await body(store, ids, bells)
            source.release()
        }
    }

    @Test(.timeLimit(.minutes(3))) func aSlowFetchOfOneRepositoryDoesNotHoldUpAnother() async throws {
        let source = ScriptedSource(hold: 1)
        try await withWorker(source) { store, ids, bells in
            let slow = try await store.accept(
                NewDelivery(forge: "github", deliveryID: "1", repositoryID: ids[0], repository: "octo/one", ref: .branch("main"), sha: Self.sha(ids[0])),
                at: Date()).buildID
            let quick = try await store.accept(
                NewDelivery(forge: "github", deliveryID: "2", repositoryID: ids[1], repository: "octo/two", ref: .branch("main"), sha: Self.sha(ids[1])),
                at: Date()).buildID
            bells.planning.ring()
            try await eventually("the second repository's build to be planned", within: .seconds(60)) {
                try await store.buildDetails(quick)?.build.state.isFinal == true
            }
            #expect(try await store.buildDetails(slow)?.build.state == .planning)
            source.release()
            try await eventually("the first repository's build once its fetch ends", within: .seconds(60)) {
                try await store.buildDetails(slow)?.build.state.isFinal == true
            }
        }
    }

    @Test(.timeLimit(.minutes(3))) func anUnapprovedForkIsNotFetched() async throws {
        let source = ScriptedSource()
        try await withWorker(source) { store, ids, bells in
            let head = String(repeating: "f", count: 40)
            let build = try await store.accept(
                NewDelivery(
                    forge: "github", deliveryID: "pr", repositoryID: ids[0], repository: "octo/one", ref: .branch("feature"), sha: head,
                    pullRequest: PullRequestInfo(number: 9, headBranch: "feature", baseBranch: "main", isFork: true, headRepository: "mallory/one")),
                at: Date()).buildID
            bells.planning.ring()
            try await eventually("the build to wait for approval", within: .seconds(60)) {
                try await store.buildDetails(build)?.build.state == .awaitingApproval
            }
            #expect(source.calls.withLock { $0 }.isEmpty)
            // Once approved, it is fetched and planned.
            #expect(try await store.approve(build, sha: head, by: "maintainer", at: Date()) != .notFound)
            bells.planning.ring()
            try await eventually("the approved build to be planned", within: .seconds(60)) {
                try await store.buildDetails(build)?.build.state.isFinal == true
            }
            #expect(source.calls.withLock { $0 }.contains("fetch-pull-request \(ids[0])"))
        }
    }
}
