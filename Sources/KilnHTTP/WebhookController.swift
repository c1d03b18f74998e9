import Foundation
import Hummingbird
import KilnCore
import Logging
import NIOCore

/// `POST /webhooks/{forge}`: a forge's delivery, read under a size cap and a limit on bodies
/// read at once, MACed as it streams, and handed to intake.
struct WebhookController: Sendable {
    /// Webhook intake.
    let intake: WebhookIntake
    /// Webhook bodies read at once.
    let slots: Slots
    /// Largest body accepted.
    let maxBodyBytes: Int
    /// Base of the build links in answers.
    let publicURL: String

    /// Where deliveries are posted: `/webhooks/{forge}`. Other middleware lets these through
    /// (private mode) or keeps them on the event loop, by this prefix.
    static let pathPrefix = "/webhooks/"

    /// Its routes.
    var endpoints: RouteCollection<BasicRequestContext> {
        let routes = RouteCollection(context: BasicRequestContext.self)
        routes.post("\(Self.pathPrefix):forge") { request, context in try await receive(request, context) }
        return routes
    }

    private func receive(_ request: Request, _ context: BasicRequestContext) async throws -> Response {
        let forge = context.parameters.get("forge") ?? ""
        let limit = maxBodyBytes
        let tooLarge = "body is larger than server.max-body-bytes (\(limit) bytes)"
        if let length = request.headers[.contentLength].flatMap(Int.init), length > limit {
            return try JSONBody.error(.contentTooLarge, tooLarge)
        }
        guard slots.take() else {
            var answer = try JSONBody.error(.serviceUnavailable, "too many webhook deliveries at once (server.max-concurrent-webhooks); redeliver it")
            answer.headers[.retryAfter] = "1"
            return answer
        }
        defer { slots.give() }
        // The body is read under the cap and MACed chunk by chunk as it arrives, for forges
        // that sign the raw body: the adapter then compares, without a second pass.
        var macs = intake.bodyMACs(forge: forge)
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
            result = try await intake.receive(forge: forge, delivery)
        } catch {
            context.logger.error("could not record a delivery: \(error)")
            return try JSONBody.error(.serviceUnavailable, "the delivery could not be recorded; redeliver it")
        }
        switch result {
        case .accepted(let builds):
            let listed = builds.map { build in
                AcceptedJSON.Build(
                    build_id: build.buildID, new: build.isNew, url: "\(publicURL)/builds/\(build.buildID)")
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
}
