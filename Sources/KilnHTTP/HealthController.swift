import Foundation
import Hummingbird
import KilnCore

/// `GET /health`: 200 when the database takes writes and nix is usable, else 503 with the reason.
struct HealthController: Sendable {
    /// Whether nix was confirmed usable.
    let health: HealthState
    /// Whether the database accepts writes.
    let databaseWritable: @Sendable () async -> Bool
    /// This instance's name in the database (a job's `instance`).
    let instance: String

    /// Its routes.
    var endpoints: RouteCollection<BasicRequestContext> {
        let routes = RouteCollection(context: BasicRequestContext.self)
        routes.get("/health") { _, _ in await answer() }
        return routes
    }

    private func answer() async -> Response {
        let writable = await databaseWritable()
        var body: [String: String] = ["database": writable ? "writable" : "not writable", "instance": instance]
        var ready = writable
        switch health.readiness {
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
