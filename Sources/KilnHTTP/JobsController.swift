import Foundation
import Hummingbird
import KilnCore

/// `GET /api/v1/jobs/{id}` and its log, `GET /api/v1/jobs/{id}/log` (`?derivation=`, `?tail=`,
/// ranges), streamed from disk.
struct JobsController: Sendable {
    /// Jobs.
    let store: any BuildQueries
    /// Running jobs' progress.
    let progress: ProgressBoard
    /// Where job logs are.
    let logs: JobLogs
    /// Base of links.
    let publicURL: String
    /// Ends followed logs at shutdown.
    let streams: EventStreams

    /// Its routes.
    var endpoints: RouteCollection<BasicRequestContext> {
        let routes = RouteCollection(context: BasicRequestContext.self)
        routes.get("/api/v1/jobs/:id") { _, context in
            guard let id = context.parameters.get("id", as: JobID.self), let job = try await store.job(id) else {
                return try JSONBody.error(.notFound, "no job with this id")
            }
            return try JSONBody.response(
                .ok, JobJSON(job, publicURL, progress: progress.progress(id), derivationLogs: logs.derivations(id)))
        }
        routes.get("/api/v1/jobs/:id/log") { request, context in
            guard let id = context.parameters.get("id", as: JobID.self), try await store.job(id) != nil else {
                return try JSONBody.error(.notFound, "no job with this id")
            }
            var path = logs.log(id)
            if request.uri.queryParameters.get("follow") == "1" {
                return try LogFollow.response(
                    path: path, offset: request.uri.queryParameters.get("offset").map { String($0) }, job: id, store: store,
                    streams: streams)
            }
            if let derivation = request.uri.queryParameters.get("derivation") {
                switch logs.derivationLog(id, derivation) {
                case .success(let found): path = found
                case .failure(.invalidName):
                    return try JSONBody.error(.badRequest, "'derivation' must be a derivation file name such as <hash>-hello.drv")
                case .failure(.notFound):
                    return try JSONBody.error(.notFound, "this job has no log for \(derivation)")
                }
            }
            return try LogFileResponse.response(path: path, tail: request.uri.queryParameters.get("tail"), range: request.headers[.range])
        }
        return routes
    }
}
