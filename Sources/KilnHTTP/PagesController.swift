import Foundation
import Hummingbird
import KilnCore

/// The HTML pages: builds (`/`), a build, a repository (`/{forge}/{owner}/{name}`), sign-in,
/// and the buttons of signed-in browsers. Every page has its JSON twin in the API.
struct PagesController: Sendable {
    /// Builds, jobs and statuses.
    let store: any BuildQueries
    /// The event log, for the head the pages follow from.
    let events: any EventLog
    /// Running jobs' progress.
    let progress: ProgressBoard
    /// Where job logs are.
    let logs: JobLogs
    /// Tokens and sessions.
    let access: Access
    /// Where the buttons' cancels, re-runs and approvals go.
    let coordinator: BuildCoordinator
    /// Base of absolute links (the badge snippet).
    let publicURL: String

    /// Its routes.
    var endpoints: RouteCollection<BasicRequestContext> {
        let routes = RouteCollection(context: BasicRequestContext.self)
        routes.get("/") { request, _ in try await index(request) }
        routes.get("/builds/:id") { request, context in try await build(request, context) }
        routes.get("/sign-in") { request, _ in
            Pages.html(.ok, Pages.render("signIn", title: "Sign in · Kiln", [:], session: await access.session(request)))
        }
        routes.post("/sign-in") { request, _ in try await signIn(request) }
        routes.post("/sign-out") { request, _ in try await signOut(request) }
        routes.post("/builds/:id/:action") { request, context in try await control(request, context) }
        routes.get("/:forge/**") { request, context in try await repository(request, context) }
        return routes
    }

    private func index(_ request: Request) async throws -> Response {
        let session = await access.session(request)
        // The log's head before the builds are read: the page then misses no change after them.
        let head = try await events.eventRange()?.upperBound ?? 0
        switch BuildListParameters.query(request) {
        case .failure(let bad):
            return Pages.html(.badRequest, Pages.message("Bad request", bad.message, session: session))
        case .success(let query):
            let builds = try await store.builds(query)
            return Pages.html(
                .ok,
                Pages.index(builds, query: query, older: BuildListParameters.next("/", query, builds), session: session, eventsFrom: head))
        }
    }

    private func build(_ request: Request, _ context: BasicRequestContext) async throws -> Response {
        let session = await access.session(request)
        let head = try await events.eventRange()?.upperBound ?? 0
        guard let id = context.parameters.get("id", as: BuildID.self), let details = try await store.buildDetails(id) else {
            return Pages.html(.notFound, Pages.notFound("No build with this id.", session: session))
        }
        let jobs = details.jobs.map { job in
            let names = logs.derivations(job.id)
            let cards = names.prefix(Pages.maxDerivationCards).compactMap { name -> Pages.DerivationLog? in
                guard case .success(let path) = logs.derivationLog(job.id, name) else { return nil }
                // Succeeded cards are folded: their logs are not read for every view of the page.
                let folded = Pages.derivationState(name, of: job) == .succeeded
                return Pages.DerivationLog(name: name, lines: folded ? nil : LogLines.read(path))
            }
            return Pages.JobView(
                job: job, jobLog: LogLines.read(logs.log(job.id)), progress: progress.progress(job.id), derivationNames: names,
                derivationLogs: cards)
        }
        return Pages.html(.ok, Pages.build(details, jobs: jobs, session: session, eventsFrom: head))
    }

    private func repository(_ request: Request, _ context: BasicRequestContext) async throws -> Response {
        let session = await access.session(request)
        let head = try await events.eventRange()?.upperBound ?? 0
        guard let forge = context.parameters.get("forge") else { return Pages.html(.notFound, Pages.notFound("No such page.")) }
        let name = context.parameters.getCatchAll().joined(separator: "/")
        let branches = try await store.branches(forge: forge, repository: name)
        guard !branches.isEmpty else {
            return Pages.html(.notFound, Pages.notFound("Kiln has no builds of \(name) on \(forge).", session: session))
        }
        switch BuildListParameters.query(request, forge: forge, repository: name) {
        case .failure(let bad):
            return Pages.html(.badRequest, Pages.message("Bad request", bad.message, session: session))
        case .success(let query):
            let builds = try await store.builds(query)
            let older = BuildListParameters.next("/\(forge)/\(name)", query, builds, includeRepository: false)
            return Pages.html(
                .ok,
                Pages.repository(
                    forge: forge, name: name, branches: branches, builds: builds, older: older, publicURL: publicURL, session: session,
                    eventsFrom: head))
        }
    }

    // MARK: Signing in, and the buttons

    private func signIn(_ request: Request) async throws -> Response {
        let fields = try await FormBody.fields(request)
        guard let token = fields["token"], let identity = await access.identify(token) else {
            let page = Pages.render(
                "signIn", title: "Sign in · Kiln", ["error": "That token is not valid (revoked, mistyped, or not a Kiln token)."],
                session: nil)
            return Pages.html(.unauthorized, page)
        }
        var response = Response(status: .seeOther, headers: [.location: "/"])
        response.headers[.setCookie] = access.sessions.start(identity.scope, tokenID: identity.id, who: identity.who)
        return response
    }

    private func signOut(_ request: Request) async throws -> Response {
        let fields = try await FormBody.fields(request)
        guard let session = await access.session(request), Sessions.csrfMatches(fields["csrf"], session) else {
            return Pages.html(.forbidden, Pages.message("Forbidden", "This form is stale; reload the page and try again."))
        }
        var response = Response(status: .seeOther, headers: [.location: "/"])
        response.headers[.setCookie] = access.sessions.end(request)
        return response
    }

    /// `POST /builds/{id}/cancel|rerun|approve` from a signed-in browser with `control`, carrying
    /// its CSRF token; answers by going back to the build (or to the new one).
    private func control(_ request: Request, _ context: BasicRequestContext) async throws -> Response {
        let fields = try await FormBody.fields(request)
        guard let session = await access.session(request) else {
            return Pages.html(.unauthorized, Pages.message("Sign in first", "Buttons need a signed-in browser."))
        }
        guard Sessions.csrfMatches(fields["csrf"], session) else {
            return Pages.html(.forbidden, Pages.message("Forbidden", "This form is stale; reload the page and try again.", session: session))
        }
        guard session.scope >= .control else {
            return Pages.html(.forbidden, Pages.message("Forbidden", "Your token's scope is \(session.scope.rawValue); buttons need control.", session: session))
        }
        guard let id = context.parameters.get("id", as: BuildID.self), let details = try await store.buildDetails(id) else {
            return Pages.html(.notFound, Pages.notFound("No build with this id.", session: session))
        }
        let build = details.build
        switch context.parameters.get("action") {
        case "cancel":
            if !build.state.isFinal { try await coordinator.cancel([id], .requested) }
            return Response(status: .seeOther, headers: [.location: "/builds/\(id)"])
        case "rerun", "rerun-failed":
            guard
                let again = try await coordinator.rerun(
                    sha: build.sha, of: build.id, repository: build.repositoryID, forge: build.forge,
                    deliveryID: "kiln-rerun-\(UUID().uuidString)",
                    failedOnly: context.parameters.get("action") == "rerun-failed")
            else { return Pages.html(.notFound, Pages.notFound("No build of this commit to run again.", session: session)) }
            return Response(status: .seeOther, headers: [.location: "/builds/\(again.buildID)"])
        case "approve":
            let result = try await coordinator.approve(id, sha: fields["sha"] ?? "", by: "\(session.who) in a browser")
            guard case .approved = result else {
                return Pages.html(.conflict, Pages.message("Not approved", "\(result)", session: session))
            }
            return Response(status: .seeOther, headers: [.location: "/builds/\(id)"])
        default:
            return Pages.html(.notFound, Pages.notFound("No such action.", session: session))
        }
    }
}
