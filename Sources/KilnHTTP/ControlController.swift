import Foundation
import Hummingbird
import KilnCore
import NIOCore
import NIOFoundationEssentialsCompat
import KilnPipeline

/// The control API: approving a fork's pull request, cancelling, running again. Every call
/// needs `Authorization: Bearer` with a `control` or `admin` API token, or the admin token.
struct ControlController: Sendable {
    /// Where approvals, cancels and re-runs go.
    let coordinator: BuildCoordinator
    /// Who may: the admin token, or a `control` (or `admin`) API token.
    let access: Access
    /// Base of links.
    let publicURL: String

    /// Its routes.
    var endpoints: RouteCollection<BasicRequestContext> {
        let routes = RouteCollection(context: BasicRequestContext.self)
        routes.post("/api/v1/approvals") { request, _ in try await approve(request) }
        routes.post("/api/v1/builds/:id/cancel") { request, context in try await cancel(request, context) }
        routes.post("/api/v1/builds/:id/rerun") { request, context in try await rerun(request, context) }
        return routes
    }

    /// `POST /api/v1/approvals` with `{"build_id": N, "sha": "<head commit>"}`: approves exactly
    /// that commit of the waiting pull request build and queues it.
    private func approve(_ request: Request) async throws -> Response {
        if let refusal = try await access.refusal(request, needs: .control) { return refusal }
        var request = request
        let body = try await request.collectBody(upTo: 64 << 10)
        guard let object = try? JSONSerialization.jsonObject(with: Data(buffer: body)) as? [String: Any],
            let buildID = (object["build_id"] as? NSNumber)?.int64Value, let sha = object["sha"] as? String,
            CommitID.isValid(sha)
        else {
            return try JSONBody.error(.badRequest, "send {\"build_id\": <build waiting for approval>, \"sha\": \"<its full head commit>\"}")
        }
        // The approval is recorded under the token that made it, never a name the caller sends.
        let approver = await access.who(request) ?? "the control API"
        switch try await coordinator.approve(buildID, sha: sha, by: approver) {
        case .approved(let build):
            return try JSONBody.response(.ok, ["message": "approved \(CommitID.short(sha)); build #\(build.id) is queued"])
        case .notFound:
            return try JSONBody.error(.notFound, "no build with this id")
        case .notAwaiting(let state):
            return try JSONBody.error(.conflict, "build #\(buildID) is \(state.rawValue), not waiting for approval")
        case .differentCommit(let current):
            return try JSONBody.error(
                .conflict, "build #\(buildID) waits for \(current); approve that commit (a newer push needs its own approval)")
        }
    }

    /// `POST /api/v1/builds/{id}/cancel`.
    private func cancel(_ request: Request, _ context: BasicRequestContext) async throws -> Response {
        if let refusal = try await access.refusal(request, needs: .control) { return refusal }
        guard let id = context.parameters.get("id", as: BuildID.self), let details = try await coordinator.store.buildDetails(id)
        else { return try JSONBody.error(.notFound, "no build with this id") }
        guard !details.build.state.isFinal else {
            return try JSONBody.error(.conflict, "build #\(id) already ended: \(details.build.state.rawValue)")
        }
        try await coordinator.cancel([id], .requested)
        return try JSONBody.response(.ok, ["message": "build #\(id) is being cancelled"])
    }

    /// `POST /api/v1/builds/{id}/rerun`: a new build of the same commit; with `?failed-only=1`,
    /// jobs that succeeded in that build keep their result (when the tree is the same).
    private func rerun(_ request: Request, _ context: BasicRequestContext) async throws -> Response {
        if let refusal = try await access.refusal(request, needs: .control) { return refusal }
        guard let id = context.parameters.get("id", as: BuildID.self), let details = try await coordinator.store.buildDetails(id)
        else { return try JSONBody.error(.notFound, "no build with this id") }
        let build = details.build
        let failedOnly = request.uri.queryParameters.get("failed-only") == "1"
        guard
            let again = try await coordinator.rerun(
                sha: build.sha, of: build.id, repository: build.repositoryID, forge: build.forge,
                deliveryID: "kiln-rerun-\(UUID().uuidString)", failedOnly: failedOnly)
        else { return try JSONBody.error(.notFound, "no build of \(build.sha) to run again") }
        return try JSONBody.response(
            .accepted, ["message": "build #\(again.buildID) queued", "url": "\(publicURL)/builds/\(again.buildID)"])
    }
}
