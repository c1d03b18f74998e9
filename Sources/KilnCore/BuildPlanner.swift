import Foundation
import KilnPipeline
import Logging

/// Decides what a build builds: fetches and resolves its commits, supersedes older builds of
/// the same branch or pull request, applies fork trust, merges pull requests into their base,
/// reads and plans the pipeline file, and reuses the result of an identical earlier build.
struct BuildPlanner: Sendable {
    let coordinator: BuildCoordinator
    let source: any SourceProvider
    let repositories: [RepositoryID: Repository]
    let limits: JobLimits
    let logger: Logger

    private var store: any KilnStore { coordinator.store }

    func plan(_ build: BuildRecord) async -> (PlanningResult, BuildResolution?) {
        guard let config = repositories[build.repositoryID] else {
            return (.errored("repository \(build.repository) is no longer configured"), nil)
        }
        do {
            if let pullRequest = build.pullRequest {
                return try await planPullRequest(build, pullRequest, config)
            }
            return try await planPush(build, config)
        } catch let error as SourceError {
            return (.errored(error.message), nil)
        } catch {
            return (.errored("\(error)"), nil)
        }
    }

    private func planPush(_ build: BuildRecord, _ repository: Repository) async throws -> (PlanningResult, BuildResolution?) {
        guard let ref = GitRef(fullName: build.ref) else {
            return (.errored("cannot build ref \(build.ref): only branches and tags are built"), nil)
        }
        _ = try await source.fetch(repository, ref: build.ref)
        guard let sha = try await source.resolve(repository, commit: build.sha) else {
            return (.errored("commit \(build.sha) is not in \(build.ref) after fetching; it may have been force-pushed away"), nil)
        }
        var resolution = BuildResolution(sha: sha, builtSHA: sha, trusted: true, treeKey: nil)
        if let reason = try await supersede(build, sha: sha, repository) {
            return (.skipped(reason: reason, announce: false), resolution)
        }
        let facts = try await source.commitFacts(repository, sha: sha, comparedTo: build.beforeSHA)
        resolution.title = BuildResolution.title(of: facts.message)
        let event = PipelineEvent(.push(ref), changedFiles: facts.changedFiles, commitMessage: facts.message)
        return try await plan(build, event: event, pipelineAt: sha, tree: facts.tree, &resolution, repository)
    }

    private func planPullRequest(_ build: BuildRecord, _ pullRequest: PullRequestInfo, _ repository: Repository)
        async throws -> (PlanningResult, BuildResolution?)
    {
        let number = pullRequest.number
        let trusted = !pullRequest.isFork || repository.forks == .build
        let fork = pullRequest.headRepository.map { " from \($0)" } ?? " from a fork"
        func awaiting(_ sha: String) -> PlanningResult {
            .awaitingApproval(reason: "awaiting approval: pull request #\(number)\(fork) runs only once a maintainer approves \(CommitID.short(sha))")
        }
        // Nothing of an untrusted fork is fetched before a maintainer approves its commit: a
        // huge or slow fork cannot stall planning, and an unapproved commit costs nothing. (A
        // forge that sends an abbreviated hash, Bitbucket Cloud, is fetched first, within the
        // fetch limits, to learn the full one its statuses are posted on.)
        let abbreviated = build.sha.count != 40 && build.sha.count != 64
        if !trusted, !abbreviated, try await !store.isApproved(pullRequest: number, sha: build.sha, repository: build.repositoryID) {
            let resolution = BuildResolution(sha: build.sha, builtSHA: build.sha, trusted: false, treeKey: nil)
            if let reason = try await supersede(build, sha: build.sha, repository, fetched: false) {
                return (.skipped(reason: reason, announce: false), resolution)
            }
            return (awaiting(build.sha), resolution)
        }
        let baseTip = try await source.fetch(repository, ref: "refs/heads/\(pullRequest.baseBranch)")
        _ = try await source.fetchPullRequest(repository, pullRequest)
        guard let head = try await source.resolve(repository, commit: build.sha) else {
            return (.errored("head commit \(build.sha) of pull request #\(number) is not in it after fetching; it may have been force-pushed away"), nil)
        }
        var resolution = BuildResolution(sha: head, builtSHA: head, trusted: trusted, treeKey: nil)
        if let reason = try await supersede(build, sha: head, repository) {
            return (.skipped(reason: reason, announce: false), resolution)
        }
        if !trusted, try await !store.isApproved(pullRequest: number, sha: head, repository: build.repositoryID) {
            return (awaiting(head), resolution)
        }
        var built = head
        var comparedTo: String? = baseTip
        switch repository.pullRequests {
        case .merge:
            switch try await source.merge(repository, base: baseTip, head: head) {
            case .merged(let merge):
                built = merge
            case .conflict(let paths):
                let listed = paths.prefix(5).joined(separator: ", ") + (paths.count > 5 ? ", …" : "")
                let summary = "cannot merge into \(pullRequest.baseBranch) at \(CommitID.short(baseTip)): conflicts in \(listed)"
                return (.invalid(summary: summary, diagnostics: paths.map { "conflict: \($0)" }), resolution)
            }
        case .head:
            comparedTo = try await source.mergeBase(repository, baseTip, head)
        }
        resolution.builtSHA = built
        let facts = try await source.commitFacts(repository, sha: built, comparedTo: comparedTo)
        let headMessage = try await source.commitFacts(repository, sha: head, comparedTo: nil).message
        resolution.title = BuildResolution.title(of: headMessage)
        let event = PipelineEvent(
            .pullRequest(base: pullRequest.baseBranch), changedFiles: facts.changedFiles, commitMessage: headMessage)
        // A fork's own pipeline file could do anything; it runs with the base branch's.
        let pipelineCommit = trusted ? built : baseTip
        return try await plan(build, event: event, pipelineAt: pipelineCommit, tree: facts.tree, &resolution, repository)
    }

    private func plan(
        _ build: BuildRecord, event: PipelineEvent, pipelineAt commit: String, tree: String,
        _ resolution: inout BuildResolution, _ repository: Repository
    ) async throws -> (PlanningResult, BuildResolution?) {
        if let adHoc = build.adHoc {
            // An ad-hoc build's one job comes from its request; the same tree and request reuse a build.
            resolution.treeKey = "\(tree):ad-hoc:\(Self.digest(adHoc.canonicalBytes))"
            return try await plan(build, adHoc.spec, event: event, &resolution)
        }
        let file = try await source.readFile(repository, sha: commit, path: PipelineFile.name, maxBytes: PipelineFile.maxBytes)
        let bytes: [UInt8]
        switch file {
        case .missing:
            let summary = "no \(PipelineFile.name) at \(CommitID.short(commit)); add one to build this repository"
            return (.invalid(summary: summary, diagnostics: []), resolution)
        case .tooLarge(let size):
            let message =
                "\(PipelineFile.name): pipeline file is \(ByteCount.format(size)); the limit is \(ByteCount.format(PipelineFile.maxBytes))"
            return (.invalid(summary: message, diagnostics: [message]), resolution)
        case .contents(let contents):
            bytes = contents
        }
        resolution.treeKey = "\(tree):\(Self.digest(bytes))"
        switch PipelineFile.parse(bytes) {
        case .invalid(let diagnostics): return (Self.invalid(diagnostics), resolution)
        case .valid(let spec): return try await plan(build, spec, event: event, &resolution)
        }
    }

    /// Plans `spec` (the pipeline file's, or an ad-hoc build's) for `event`.
    private func plan(_ build: BuildRecord, _ spec: PipelineSpec, event: PipelineEvent, _ resolution: inout BuildResolution)
        async throws -> (PlanningResult, BuildResolution?)
    {
        switch BuildPlan.make(spec, for: event, limits: limits) {
        case .skipped(let reason, let announce):
            return (.skipped(reason: reason, announce: announce), resolution)
        case .invalid(let diagnostics):
            return (Self.invalid(diagnostics), resolution)
        case .jobs(var jobs):
            if let total = SystemMemory.total(), let greedy = jobs.first(where: { ($0.minMemory ?? 0) > total }) {
                let message =
                    "job '\(greedy.name)' needs min-memory \(ByteCount.format(greedy.minMemory ?? 0)); this machine has \(ByteCount.format(total))"
                return (.invalid(summary: message, diagnostics: [message]), resolution)
            }
            // A trusted build that pushes to the cache reuses only a trusted build (an untrusted
            // one never pushed); otherwise it builds afresh and pushes.
            let trustedOnly = resolution.trusted && jobs.contains { $0.cachePush }
            // A build that pushes images pushes them with its own tags: it never reuses another.
            let pushesImages = resolution.trusted && jobs.contains { $0.image != nil } || build.adHoc?.cachix != nil
            if build.rerunOf == nil, !pushesImages, let key = resolution.treeKey,
                let earlier = try await store.reusableBuild(
                    treeKey: key, repository: build.repositoryID, excluding: build.id, trustedOnly: trustedOnly)
            {
                return (.reused(earlier), resolution)
            }
            if !resolution.trusted {
                for index in jobs.indices { jobs[index].cachePush = false }
            }
            // Results are kept only for the very tree they were built from: a pull request merged
            // again onto a moved base builds everything.
            if let original = build.rerunOf, build.rerunFailedOnly, let key = resolution.treeKey,
                try await store.buildDetails(original)?.build.treeKey == key
            {
                return (.rerunFailed(jobs, of: original), resolution)
            }
            return (.planned(jobs), resolution)
        }
    }

    /// Cancels older unfinished builds of the same branch or pull request, unless one of them
    /// builds this commit or a descendant of it (a late delivery): then this build is the stale
    /// one, and the reason is returned. With `fetched` false (an unapproved fork, whose commits
    /// are not in the mirror) only the same commit counts as being built already.
    private func supersede(_ build: BuildRecord, sha: String, _ repository: Repository, fetched: Bool = true)
        async throws -> String?
    {
        let older = try await store.unfinishedBuilds(BuildKey(build), repository: build.repositoryID, olderThan: build.id)
        var superseded: [BuildID] = []
        for earlier in older {
            if earlier.sha == sha {
                return "commit \(CommitID.short(sha)) is already being built (build #\(earlier.id))"
            }
            if fetched, try await source.isDescendant(repository, earlier.sha, of: sha) {
                return "a newer commit, \(CommitID.short(earlier.sha)), is already being built (build #\(earlier.id))"
            }
            superseded.append(earlier.id)
        }
        guard !superseded.isEmpty else { return nil }
        try await coordinator.cancel(superseded, .superseded(by: sha))
        logger.info("superseded older builds", metadata: ["build.id": "\(build.id)", "superseded": "\(superseded)"])
        return nil
    }

    static func invalid(_ diagnostics: [Diagnostic]) -> PlanningResult {
        let formatted = diagnostics.map { $0.formatted(file: PipelineFile.name) }
        var summary = formatted.first ?? "\(PipelineFile.name) is invalid"
        if formatted.count > 1 { summary += " (and \(formatted.count - 1) more)" }
        return .invalid(summary: summary, diagnostics: formatted)
    }

    /// FNV-1a, 64 bits: tells pipeline files apart for the build key (not a security measure).
    static func digest(_ bytes: [UInt8]) -> String {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in bytes {
            hash ^= UInt64(byte)
            hash = hash &* 0x100_0000_01b3
        }
        return String(hash, radix: 16)
    }
}
