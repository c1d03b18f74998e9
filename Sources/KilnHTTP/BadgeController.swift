import Foundation
import Hummingbird
import KilnCore
import NIOCore

/// `GET /badge/{forge}/{owner}/{name}.svg?branch=main&job=NAME`: the outcome of the newest
/// finished build (or of one job of it) as an SVG badge, never cached for long.
struct BadgeController: Sendable {
    /// Builds.
    let store: any BuildQueries

    /// Its routes.
    var endpoints: RouteCollection<BasicRequestContext> {
        let routes = RouteCollection(context: BasicRequestContext.self)
        routes.get("/badge/:forge/**") { request, context in try await badge(request, context) }
        return routes
    }

    private func badge(_ request: Request, _ context: BasicRequestContext) async throws -> Response {
        var segments = context.parameters.getCatchAll().map(String.init)
        guard let forge = context.parameters.get("forge"), let last = segments.last, last.hasSuffix(".svg") else {
            return try JSONBody.error(.notFound, "badges are at /badge/{forge}/{owner}/{name}.svg")
        }
        segments[segments.count - 1] = String(last.dropLast(4))
        let parameters = request.uri.queryParameters
        let branch = parameters.get("branch").flatMap { $0.isEmpty ? nil : String($0) }
        let job = parameters.get("job").flatMap { $0.isEmpty ? nil : String($0) }
        let recent = try await store.builds(
            BuildListQuery(forge: forge, repository: segments.joined(separator: "/"), branch: branch, limit: 20))
        var label = job ?? "kiln"
        var state = "unknown"
        // Pushes only: a pull request (a stranger's fork, perhaps) never colours a badge.
        if let build = recent.first(where: { $0.state.isFinal && $0.state != .skipped && $0.pullRequest == nil }) {
            if let job {
                let found = try await store.buildDetails(build.id)?.jobs.first { $0.name == job }
                state = found.map { Self.word($0.state) } ?? "unknown"
            } else {
                state = Self.word(build.state)
            }
        }
        if label.count > 40 { label = String(label.prefix(39)) + "…" }
        let svg = Self.svg(label: label, value: state)
        return Response(
            status: .ok,
            headers: [
                .contentType: "image/svg+xml; charset=utf-8", .cacheControl: "no-cache, max-age=0", .eTag: "\"\(label)-\(state)\"",
            ],
            body: .init(byteBuffer: ByteBuffer(string: svg)))
    }

    static func word(_ state: BuildState) -> String {
        switch state {
        case .succeeded: return "passing"
        case .failed, .errored: return "failing"
        case .cancelled: return "cancelled"
        case .skipped, .queued, .planning, .running, .awaitingApproval: return "unknown"
        }
    }

    static func word(_ state: JobState) -> String {
        switch state {
        case .succeeded: return "passing"
        case .failed, .timedOut, .errored: return "failing"
        case .cancelled: return "cancelled"
        case .skipped, .queued, .running: return "unknown"
        }
    }

    /// A flat two-part badge; text is escaped.
    static func svg(label: String, value: String) -> String {
        let colour = ["passing": "#2e7d32", "failing": "#c62828", "cancelled": "#9e7a00"][value] ?? "#757575"
        let left = 10 + label.count * 7
        let right = 10 + value.count * 7
        let width = left + right
        return """
            <svg xmlns="http://www.w3.org/2000/svg" width="\(width)" height="20" role="img" aria-label="\(Pages.escape(label)): \(value)">\
            <title>\(Pages.escape(label)): \(value)</title><rect width="\(left)" height="20" fill="#555"/>\
            <rect x="\(left)" width="\(right)" height="20" fill="\(colour)"/>\
            <g fill="#fff" font-family="Verdana,DejaVu Sans,sans-serif" font-size="11">\
            <text x="5" y="14">\(Pages.escape(label))</text><text x="\(left + 5)" y="14">\(value)</text></g></svg>
            """
    }
}
