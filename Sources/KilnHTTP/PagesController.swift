import Foundation
import Hummingbird
import KilnCore

/// `/` and `/builds/{id}`: the HTML pages, which reload on events from the log's head at render.
struct PagesController: Sendable {
    /// Builds, jobs and statuses.
    let store: any BuildQueries
    /// The event log, for the head the pages follow from.
    let events: any EventLog
    /// Running jobs' progress.
    let progress: ProgressBoard
    /// Where job logs are.
    let logs: JobLogs

    /// Its routes.
    var endpoints: RouteCollection<BasicRequestContext> {
        let routes = RouteCollection(context: BasicRequestContext.self)
        routes.get("/") { _, _ in
            // The log's head before the builds are read: the page then misses no change after them.
            let head = try await events.eventRange()?.upperBound ?? 0
            return Pages.html(.ok, Pages.index(try await store.recentBuilds(limit: 100), eventsFrom: head))
        }
        routes.get("/builds/:id") { _, context in
            let head = try await events.eventRange()?.upperBound ?? 0
            guard let id = context.parameters.get("id", as: BuildID.self), let details = try await store.buildDetails(id) else {
                return Pages.html(.notFound, Pages.notFound("No build with this id."))
            }
            let jobs = details.jobs.map { job in
                Pages.JobView(
                    job: job, log: LogExcerpt.read(logs.log(job.id)), progress: progress.progress(job.id),
                    derivations: logs.derivations(job.id))
            }
            return Pages.html(.ok, Pages.build(details, jobs: jobs, eventsFrom: head))
        }
        return routes
    }
}
