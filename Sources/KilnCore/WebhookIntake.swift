import Foundation
import Logging
import KilnPipeline

/// A configured forge as intake sees it: the adapter and the repositories it may build.
public struct ForgeEndpoint: Sendable {
    /// The adapter.
    public var forge: any Forge
    /// Configured repositories by lowercased `owner/name`.
    public var repositories: [String: Repository]

    /// Creates an endpoint.
    public init(forge: any Forge, repositories: [String: Repository]) {
        self.forge = forge
        self.repositories = repositories
    }
}

/// A build a delivery asked for.
public struct AcceptedBuild: Sendable, Hashable {
    /// The build.
    public var buildID: BuildID
    /// False when an earlier delivery with the same id already made it.
    public var isNew: Bool

    /// Creates the answer.
    public init(buildID: BuildID, isNew: Bool) {
        self.buildID = buildID
        self.isNew = isNew
    }
}

/// What intake made of a webhook; the HTTP edge turns each case into a status code.
public enum IntakeResult: Sendable, Equatable {
    /// Recorded (202); a build with `isNew` false is a redelivery, which starts nothing.
    case accepted([AcceptedBuild])
    /// Nothing to build (200); the reason says what happened instead.
    case ignored(reason: String)
    /// No forge of that name is configured (404).
    case unknownForge(String)
    /// The repository is not configured for this forge (404).
    case unknownRepository(String)
    /// Unsigned, wrongly signed or malformed (401 / 400).
    case rejected(WebhookError)
}

/// Turns a webhook into durable builds. Does no git or network work: fetching and
/// reading `.kiln.yml` happen in the worker after the reply.
public struct WebhookIntake: Sendable {
    private let endpoints: [String: ForgeEndpoint]
    private let coordinator: BuildCoordinator
    private let logger: Logger
    /// Each forge's raw-body MACs, keyed once: deriving the keys cost as much as the MAC of a push.
    private let bodyMACs: [String: BodyMACs]

    /// Creates intake over configured forges, recording builds through `coordinator`.
    public init(endpoints: [String: ForgeEndpoint], coordinator: BuildCoordinator, logger: Logger) {
        self.endpoints = endpoints
        self.coordinator = coordinator
        self.logger = logger
        bodyMACs = endpoints.mapValues { BodyMACs(secrets: $0.forge.rawBodySecrets) }
    }

    /// The MACs under the secrets forge `forgeName` signs raw bodies with (none for an unknown
    /// forge), ready for the body at the edge.
    public func bodyMACs(forge forgeName: String) -> BodyMACs { bodyMACs[forgeName] ?? BodyMACs(secrets: []) }

    /// Verifies, decodes and records one delivery to forge `forgeName`.
    /// - Throws: only when the database fails; the edge answers 503 and the forge may redeliver.
    public func receive(forge forgeName: String, _ delivery: WebhookDelivery) async throws -> IntakeResult {
        guard let endpoint = endpoints[forgeName] else {
            coordinator.metrics.webhook(forge: forgeName, event: "unknown", outcome: "unknown_forge")
            return .unknownForge(forgeName)
        }
        let outcome: WebhookOutcome
        do {
            outcome = try endpoint.forge.receive(delivery)
        } catch {
            logger.notice("webhook refused", metadata: ["forge": "\(forgeName)", "reason": "\(error)"])
            coordinator.metrics.webhook(forge: forgeName, event: "unknown", outcome: "rejected")
            return .rejected(error)
        }
        guard case .events(let events) = outcome else {
            coordinator.metrics.webhook(forge: forgeName, event: "other", outcome: "ignored")
            if case .ignored(let reason) = outcome { return .ignored(reason: reason) }
            return .ignored(reason: "nothing to do")
        }
        let result = try await act(on: events, endpoint, forgeName)
        let outcomeLabel: String
        switch result {
        case .accepted(let builds): outcomeLabel = builds.contains(where: \.isNew) ? "accepted" : "duplicate"
        case .ignored: outcomeLabel = "ignored"
        case .unknownRepository: outcomeLabel = "unknown_repository"
        case .unknownForge: outcomeLabel = "unknown_forge"
        case .rejected: outcomeLabel = "rejected"
        }
        coordinator.metrics.webhook(forge: forgeName, event: events.first.map(Self.kind) ?? "other", outcome: outcomeLabel)
        return result
    }

    /// The kind of an event, for metrics.
    private static func kind(_ event: ForgeEvent) -> String {
        switch event {
        case .push(let push):
            if case .tag = push.ref { return "tag_push" }
            return "push"
        case .pullRequest: return "pull_request"
        case .pullRequestClosed: return "pull_request_closed"
        case .rerun: return "rerun"
        case .approve: return "approval"
        }
    }

    /// Records what the events of one delivery ask for.
    private func act(on events: [ForgeEvent], _ endpoint: ForgeEndpoint, _ forgeName: String) async throws -> IntakeResult {
        var accepted: [AcceptedBuild] = []
        var reasons: [String] = []
        for (index, event) in events.enumerated() {
            let repositoryName = Self.repository(of: event)
            guard let repository = endpoint.repositories[repositoryName.lowercased()] else {
                return .unknownRepository(repositoryName)
            }
            // Several refs in one delivery: each gets its own key, so a redelivery still starts nothing.
            func key(_ id: String) -> String { events.count > 1 ? "\(id)#\(index)" : id }
            switch event {
            case .push(let push):
                accepted.append(
                    try await coordinator.accept(
                        NewDelivery(
                            forge: forgeName, deliveryID: key(push.deliveryID), repositoryID: repository.id,
                            repository: repository.name, ref: push.ref, sha: push.sha, before: push.before)))
            case .pullRequest(let pull):
                if let reason = try await reasonToIgnore(pull, repository) {
                    reasons.append(reason)
                    continue
                }
                let info = PullRequestInfo(
                    number: pull.number, headBranch: pull.headBranch, baseBranch: pull.baseBranch, isFork: pull.isFork,
                    headRepository: pull.headRepository)
                accepted.append(
                    try await coordinator.accept(
                        NewDelivery(
                            forge: forgeName, deliveryID: key(pull.deliveryID), repositoryID: repository.id,
                            repository: repository.name, ref: .branch(pull.headBranch), sha: pull.headSHA, pullRequest: info)))
            case .pullRequestClosed(let closed):
                let cancelled = try await coordinator.closePullRequest(closed.number, merged: closed.merged, repository: repository.id)
                let count = cancelled == 1 ? "1 build" : "\(cancelled) builds"
                reasons.append("pull request #\(closed.number) \(closed.merged ? "merged" : "closed"); cancelled \(count)")
            case .rerun(let request):
                guard
                    let build = try await coordinator.rerun(
                        sha: request.sha, repository: repository.id, forge: forgeName, deliveryID: key(request.deliveryID))
                else {
                    reasons.append("commit \(CommitID.short(request.sha)) was never built here; nothing to run again")
                    continue
                }
                accepted.append(build)
            case .approve(let request):
                guard let waiting = try await coordinator.store.awaitingApproval(sha: request.sha, repository: repository.id) else {
                    reasons.append("no build waits for approval of \(CommitID.short(request.sha))")
                    continue
                }
                if case .approved = try await coordinator.approve(waiting, sha: request.sha, by: request.approver) {
                    accepted.append(AcceptedBuild(buildID: waiting, isNew: true))
                } else {
                    reasons.append("build #\(waiting) could not be approved")
                }
            }
        }
        logger.info("delivery handled", metadata: [
            "forge": "\(forgeName)", "builds": "\(accepted.map(\.buildID))", "ignored": "\(reasons)",
        ])
        return accepted.isEmpty ? .ignored(reason: reasons.joined(separator: "; ")) : .accepted(accepted)
    }

    /// Why a pull request event starts nothing, or nil when it builds.
    private func reasonToIgnore(_ pull: PullRequestEvent, _ repository: Repository) async throws -> String? {
        if pull.isFork, repository.forks == .ignore {
            return "pull request #\(pull.number) comes from a fork; forks are not built for \(repository.name)"
        }
        if pull.action == .updated,
            let head = try await coordinator.store.latestHead(pullRequest: pull.number, repository: repository.id),
            head.hasPrefix(pull.headSHA) || pull.headSHA.hasPrefix(head)
        {
            return "pull request #\(pull.number) was edited; its commits did not change"
        }
        return nil
    }

    private static func repository(of event: ForgeEvent) -> String {
        switch event {
        case .push(let push): return push.repository
        case .pullRequest(let pull): return pull.repository
        case .pullRequestClosed(let closed): return closed.repository
        case .rerun(let request): return request.repository
        case .approve(let request): return request.repository
        }
    }
}
