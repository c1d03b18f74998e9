import Foundation
import Hummingbird
import KilnCore

/// `GET /api/v1/builds` and `GET /api/v1/builds/{id}`: builds as JSON.
struct BuildsController: Sendable {
    /// Builds, jobs and statuses.
    let store: any BuildQueries
    /// Running jobs' progress.
    let progress: ProgressBoard
    /// Job logs, for their links and derivation lists.
    let logs: JobLogs
    /// Base of links.
    let publicURL: String

    /// Its routes.
    var endpoints: RouteCollection<BasicRequestContext> {
        let routes = RouteCollection(context: BasicRequestContext.self)
        routes.get("/api/v1/builds") { _, _ in
            let builds = try await store.recentBuilds(limit: 50)
            return try JSONBody.response(.ok, ["builds": builds.map { BuildJSON($0, jobs: nil, statuses: nil, publicURL) }])
        }
        routes.get("/api/v1/builds/:id") { _, context in
            guard let id = context.parameters.get("id", as: BuildID.self), let details = try await store.buildDetails(id) else {
                return try JSONBody.error(.notFound, "no build with this id")
            }
            return try JSONBody.response(
                .ok, BuildJSON(details.build, jobs: details.jobs, statuses: details.statuses, publicURL, progress: progress, logs: logs))
        }
        return routes
    }
}
