import Foundation
import Hummingbird
import KilnCore
import Logging
import NIOCore

/// Kiln's routes (DESIGN.md §7). Errors become HTTP statuses here and nowhere else.
public enum KilnRouter {
    /// The events socket's one route: `GET /events`, post-build events as Determinate Nixd serves them.
    public static func eventsSocket(_ coordinator: BuildCoordinator, streams: EventStreams) -> Router<BasicRequestContext> {
        let router = Router()
        router.get("/events") { _, _ in
            try EventStream.postBuild(coordinator.store, streams: streams)
        }
        return router
    }

    /// Builds the router.
    public static func make(_ dependencies: HTTPDependencies) -> Router<BasicRequestContext> {
        let router = Router()
        router.post("/webhooks/:forge") { request, context in
            try await webhook(request, context, dependencies)
        }
        router.get("/health") { _, _ in
            await health(dependencies)
        }
        router.get("/api/v1/builds") { _, _ in
            let builds = try await dependencies.store.recentBuilds(limit: 50)
            return try JSONBody.response(.ok, ["builds": builds.map { BuildJSON($0, jobs: nil, statuses: nil, dependencies.publicURL) }])
        }
        router.get("/api/v1/builds/:id") { _, context in
            guard let id = context.parameters.get("id", as: BuildID.self),
                let details = try await dependencies.store.buildDetails(id)
            else { return try JSONBody.error(.notFound, "no build with this id") }
            return try JSONBody.response(
                .ok,
                BuildJSON(
                    details.build, jobs: details.jobs, statuses: details.statuses, dependencies.publicURL,
                    progress: dependencies.progress, logs: dependencies.logs))
        }
        router.get("/api/v1/events") { request, _ in
            try EventStream.api(request, dependencies.coordinator.store, streams: dependencies.eventStreams)
        }
        router.get("/api/v1/jobs/:id") { _, context in
            guard let id = context.parameters.get("id", as: JobID.self), let job = try await dependencies.store.job(id) else {
                return try JSONBody.error(.notFound, "no job with this id")
            }
            return try JSONBody.response(
                .ok,
                JobJSON(
                    job, dependencies.publicURL, progress: dependencies.progress.progress(id),
                    derivationLogs: dependencies.logs.derivations(id)))
        }
        router.get("/api/v1/jobs/:id/log") { request, context in
            guard let id = context.parameters.get("id", as: JobID.self), try await dependencies.store.job(id) != nil else {
                return try JSONBody.error(.notFound, "no job with this id")
            }
            var path = dependencies.logs.log(id)
            if let derivation = request.uri.queryParameters.get("derivation") {
                switch dependencies.logs.derivationLog(id, derivation) {
                case .success(let found): path = found
                case .failure(.invalidName):
                    return try JSONBody.error(.badRequest, "'derivation' must be a derivation file name such as <hash>-hello.drv")
                case .failure(.notFound):
                    return try JSONBody.error(.notFound, "this job has no log for \(derivation)")
                }
            }
            return try LogFileResponse.response(
                path: path, tail: request.uri.queryParameters.get("tail"), range: request.headers[.range])
        }
        router.get("/builds/:id") { _, context in
            // The log's head before the build is read: the page then misses no change after it.
            let head = try await dependencies.coordinator.store.eventRange()?.upperBound ?? 0
            guard let id = context.parameters.get("id", as: BuildID.self),
                let details = try await dependencies.store.buildDetails(id)
            else { return Pages.html(.notFound, Pages.notFound("No build with this id.")) }
            let jobs = details.jobs.map { job in
                Pages.JobView(
                    job: job, log: LogExcerpt.read(dependencies.logs.log(job.id)),
                    progress: dependencies.progress.progress(job.id),
                    derivations: dependencies.logs.derivations(job.id))
            }
            return Pages.html(.ok, Pages.build(details, jobs: jobs, eventsFrom: head))
        }
        router.post("/api/v1/approvals") { request, context in
            try await Control.approve(request, context, dependencies)
        }
        router.post("/api/v1/builds/:id/cancel") { request, context in
            try await Control.cancel(request, context, dependencies)
        }
        router.post("/api/v1/builds/:id/rerun") { request, context in
            try await Control.rerun(request, context, dependencies)
        }
        router.get("/") { _, _ in
            // The log's head before the builds are read: the page then misses no change after them.
            let head = try await dependencies.coordinator.store.eventRange()?.upperBound ?? 0
            return Pages.html(.ok, Pages.index(try await dependencies.store.recentBuilds(limit: 100), eventsFrom: head))
        }
        return router
    }

    private static func webhook(_ request: Request, _ context: BasicRequestContext, _ dependencies: HTTPDependencies)
        async throws -> Response
    {
        let forge = context.parameters.get("forge") ?? ""
        let limit = dependencies.maxBodyBytes
        let tooLarge = "body is larger than server.max-body-bytes (\(limit) bytes)"
        if let length = request.headers[.contentLength].flatMap(Int.init), length > limit {
            return try JSONBody.error(.contentTooLarge, tooLarge)
        }
        guard dependencies.webhookSlots.take() else {
            var answer = try JSONBody.error(.serviceUnavailable, "too many webhook deliveries at once (server.max-concurrent-webhooks); redeliver it")
            answer.headers[.retryAfter] = "1"
            return answer
        }
        defer { dependencies.webhookSlots.give() }
        // The body is read under the cap and MACed chunk by chunk as it arrives, for forges
        // that sign the raw body: the adapter then compares, without a second pass.
        var macs = BodyMACs(secrets: dependencies.intake.rawBodySecrets(forge: forge))
        var body = ByteBuffer()
        for try await chunk in request.body {
            guard body.readableBytes + chunk.readableBytes <= limit else { return try JSONBody.error(.contentTooLarge, tooLarge) }
            if !macs.isEmpty { chunk.withUnsafeReadableBytes { macs.update($0) } }
            body.writeImmutableBuffer(chunk)
        }
        let headers = request.headers.map { (name: $0.name.rawName, value: $0.value) }
        let delivery = WebhookDelivery(
            headers: headers, body: Array(buffer: body), bodyMACs: macs.isEmpty ? nil : macs.finalize())
        let result: IntakeResult
        do {
            result = try await dependencies.intake.receive(forge: forge, delivery)
        } catch {
            context.logger.error("could not record a delivery: \(error)")
            return try JSONBody.error(.serviceUnavailable, "the delivery could not be recorded; redeliver it")
        }
        switch result {
        case .accepted(let builds):
            let listed = builds.map { build in
                AcceptedJSON.Build(
                    build_id: build.buildID, new: build.isNew, url: "\(dependencies.publicURL)/builds/\(build.buildID)")
            }
            let message =
                builds.allSatisfy(\.isNew) ? "build queued" : builds.contains(where: \.isNew) ? "builds queued" : "already received; the build exists"
            let accepted = AcceptedJSON(
                build_id: listed[0].build_id, new: listed[0].new, url: listed[0].url, builds: listed, message: message)
            return Response(
                status: .accepted, headers: [.contentType: "application/json; charset=utf-8"],
                body: .init(byteBuffer: ByteBuffer(bytes: accepted.compactJSON)))
        case .ignored(let reason):
            return try JSONBody.response(.ok, ["ignored": reason])
        case .unknownForge(let name):
            return try JSONBody.error(.notFound, "no forge named '\(name)' is configured")
        case .unknownRepository(let name):
            return try JSONBody.error(.notFound, "repository '\(name)' is not configured for forge '\(forge)'")
        case .rejected(let error):
            switch error {
            case .missingSignature, .badSignature: return try JSONBody.error(.unauthorized, error.description)
            case .malformed: return try JSONBody.error(.badRequest, error.description)
            }
        }
    }

    private static func health(_ dependencies: HTTPDependencies) async -> Response {
        let writable = await dependencies.databaseWritable()
        var body: [String: String] = ["database": writable ? "writable" : "not writable"]
        var ready = writable
        switch dependencies.health.readiness {
        case .ready(let detail):
            body["nix"] = detail
        case .notReady(let reason):
            body["nix"] = reason
            ready = false
        }
        body["status"] = ready ? "ready" : "not ready"
        return (try? JSONBody.response(ready ? .ok : .serviceUnavailable, body)) ?? Response(status: .internalServerError)
    }
}

/// JSON answers.
enum JSONBody {
    static let encoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
        encoder.dateEncodingStrategy = .iso8601
        return encoder
    }()

    static func response(_ status: HTTPResponse.Status, _ value: some Encodable) throws -> Response {
        var data = try encoder.encode(value)
        data.append(0x0A)
        return Response(
            status: status, headers: [.contentType: "application/json; charset=utf-8"],
            body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }

    static func error(_ status: HTTPResponse.Status, _ message: String) throws -> Response {
        try response(status, ["error": message])
    }
}
