import Foundation
import Logging

/// A configured repository: its id and its name as the configuration spells it.
public struct RepositoryRef: Sendable, Hashable {
    /// Database id.
    public var id: RepositoryID
    /// `owner/name` from the configuration; statuses are posted under this name, never the payload's.
    public var name: String

    /// Creates a reference.
    public init(id: RepositoryID, name: String) {
        self.id = id
        self.name = name
    }
}

/// A configured forge as intake sees it: the adapter and the repositories it may build.
public struct ForgeEndpoint: Sendable {
    /// The adapter.
    public var forge: any Forge
    /// Configured repositories by lowercased `owner/name`.
    public var repositories: [String: RepositoryRef]

    /// Creates an endpoint.
    public init(forge: any Forge, repositories: [String: RepositoryRef]) {
        self.forge = forge
        self.repositories = repositories
    }
}

/// What intake made of a webhook; the HTTP edge turns each case into a status code.
public enum IntakeResult: Sendable, Equatable {
    /// Recorded (202); `isNew` is false for a redelivery, which starts nothing.
    case accepted(buildID: BuildID, isNew: Bool)
    /// Nothing to build (200).
    case ignored(reason: String)
    /// No forge of that name is configured (404).
    case unknownForge(String)
    /// The repository is not configured for this forge (404).
    case unknownRepository(String)
    /// Unsigned, wrongly signed or malformed (401 / 400).
    case rejected(WebhookError)
}

/// Turns a webhook into a durable build. Does no git or network work: fetching and
/// reading `.kiln.yml` happen in the worker after the reply.
public struct WebhookIntake: Sendable {
    private let endpoints: [String: ForgeEndpoint]
    private let store: any BuildStore
    private let planning: Doorbell
    private let logger: Logger

    /// Creates intake over configured forges; `planning` is rung for every new build.
    public init(endpoints: [String: ForgeEndpoint], store: any BuildStore, planning: Doorbell, logger: Logger) {
        self.endpoints = endpoints
        self.store = store
        self.planning = planning
        self.logger = logger
    }

    /// Verifies, decodes and records one delivery to forge `forgeName`.
    /// - Throws: only when the database fails; the edge answers 503 and the forge may redeliver.
    public func receive(forge forgeName: String, _ delivery: WebhookDelivery) async throws -> IntakeResult {
        guard let endpoint = endpoints[forgeName] else { return .unknownForge(forgeName) }
        let outcome: WebhookOutcome
        do {
            outcome = try endpoint.forge.receive(delivery)
        } catch {
            logger.notice("webhook refused", metadata: ["forge": "\(forgeName)", "reason": "\(error)"])
            return .rejected(error)
        }
        switch outcome {
        case .ignored(let reason):
            return .ignored(reason: reason)
        case .trigger(let push):
            guard let repository = endpoint.repositories[push.repository.lowercased()] else {
                return .unknownRepository(push.repository)
            }
            let accepted = try await store.accept(
                NewDelivery(
                    forge: forgeName, deliveryID: push.deliveryID, repositoryID: repository.id,
                    repository: repository.name, ref: push.ref, sha: push.sha, before: push.before),
                at: Date())
            if accepted.isNew { planning.ring() }
            logger.info(
                accepted.isNew ? "build accepted" : "redelivery; build already exists",
                metadata: [
                    "delivery.id": "\(push.deliveryID)", "build.id": "\(accepted.buildID)", "forge": "\(forgeName)",
                ])
            return .accepted(buildID: accepted.buildID, isNew: accepted.isNew)
        }
    }
}
