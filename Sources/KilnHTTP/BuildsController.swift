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
        routes.get("/api/v1/builds") { request, _ in
            switch BuildListParameters.query(request) {
            case .failure(let bad): return try JSONBody.error(.badRequest, bad.message)
            case .success(let query):
                let builds = try await store.builds(query)
                return try JSONBody.response(
                    .ok,
                    BuildListJSON(
                        builds: builds.map { BuildJSON($0, jobs: nil, statuses: nil, publicURL) },
                        next: BuildListParameters.next("/api/v1/builds", query, builds)))
            }
        }
        routes.get("/api/v1/repositories/:forge/**") { request, context in
            let forge = context.parameters.get("forge") ?? ""
            let name = context.parameters.getCatchAll().joined(separator: "/")
            let branches = try await store.branches(forge: forge, repository: name)
            guard !branches.isEmpty else { return try JSONBody.error(.notFound, "Kiln has no builds of \(name) on \(forge)") }
            switch BuildListParameters.query(request, forge: forge, repository: name) {
            case .failure(let bad): return try JSONBody.error(.badRequest, bad.message)
            case .success(let query):
                let builds = try await store.builds(query)
                return try JSONBody.response(
                    .ok,
                    RepositoryJSON(
                        forge: forge, repository: name, badge: "\(publicURL)/badge/\(forge)/\(name).svg",
                        branches: branches.map { BuildJSON($0, jobs: nil, statuses: nil, publicURL) },
                        builds: builds.map { BuildJSON($0, jobs: nil, statuses: nil, publicURL) },
                        next: BuildListParameters.next("/api/v1/repositories/\(forge)/\(name)", query, builds, includeRepository: false)))
            }
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

/// A page of builds, and the link to the next (older) one.
struct BuildListJSON: Encodable {
    var builds: [BuildJSON]
    var next: String?
}

/// A repository: its branches' newest builds, a page of its builds, its badge.
struct RepositoryJSON: Encodable {
    var forge: String
    var repository: String
    var badge: String
    var branches: [BuildJSON]
    var builds: [BuildJSON]
    var next: String?
}
