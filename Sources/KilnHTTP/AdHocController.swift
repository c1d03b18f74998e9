import Foundation
import Hummingbird
import KilnCore

/// The build service behind `POST /api/v1/builds` and `GET /api/v1/templates`.
public protocol AdHocBuilds: Sendable {
    /// Checks a request (its JSON body), records its source and queues its build.
    func submit(_ body: [UInt8]) async -> AdHocAnswer
    /// The templates ad-hoc builds may name, with their parameters.
    func templates() async -> [AdHocTemplate]
}

/// What became of a request.
public enum AdHocAnswer: Sendable {
    /// Queued as this build; the source it builds (`expression`, `git URL#branch at SHA`, …).
    case accepted(BuildID, source: String)
    /// Refused: the HTTP status and what is wrong.
    case refused(status: Int, message: String)
}

/// A template, as `GET /api/v1/templates` lists it.
public struct AdHocTemplate: Sendable, Encodable {
    /// One parameter of its function.
    public struct Parameter: Sendable, Encodable {
        public var name: String
        public var required: Bool

        public init(name: String, required: Bool) {
            self.name = name
            self.required = required
        }
    }

    public var name: String
    public var parameters: [Parameter]

    public init(name: String, parameters: [Parameter]) {
        self.name = name
        self.parameters = parameters
    }
}

struct AdHocController: Sendable {
    let builds: any AdHocBuilds
    let access: Access
    let publicURL: String
    let maxBodyBytes: Int

    var endpoints: RouteCollection<BasicRequestContext> {
        let routes = RouteCollection(context: BasicRequestContext.self)
        routes.post("/api/v1/builds") { request, _ in try await submit(request) }
        routes.get("/api/v1/templates") { _, _ in try JSONBody.response(.ok, ["templates": await builds.templates()]) }
        return routes
    }

    private func submit(_ request: Request) async throws -> Response {
        if let refusal = try await access.refusal(request, needs: .control) { return refusal }
        var request = request
        let body: ByteBuffer
        do {
            body = try await request.collectBody(upTo: min(maxBodyBytes, 1 << 20))
        } catch {
            return try JSONBody.error(.contentTooLarge, "the request is larger than \(min(maxBodyBytes, 1 << 20) >> 10) KiB")
        }
        switch await builds.submit(Array(buffer: body)) {
        case .refused(let status, let message):
            return try JSONBody.error(HTTPResponse.Status(code: status), message)
        case .accepted(let id, let source):
            return try JSONBody.response(
                .accepted,
                AcceptedAdHoc(
                    build_id: id, source: source, url: "\(publicURL)/builds/\(id)", api_url: "\(publicURL)/api/v1/builds/\(id)",
                    events_url: "\(publicURL)/api/v1/events?build=\(id)", cancel_url: "\(publicURL)/api/v1/builds/\(id)/cancel"))
        }
    }
}

struct AcceptedAdHoc: Encodable {
    var build_id: BuildID
    var source: String
    var url: String
    var api_url: String
    var events_url: String
    var cancel_url: String
}
