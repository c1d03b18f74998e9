import Foundation
import HTTPTypes
import Hummingbird
import KilnCore

/// Who a request is: the scope its bearer token grants (the admin token, or an API token).
struct Access: Sendable {
    /// `server.admin-token-file`'s token; nil when none is configured.
    let adminToken: Secret?
    /// API tokens; nil when there are none to check.
    let tokens: (any TokenStore)?
    /// Signed-in browsers.
    let sessions: Sessions

    /// The scope `request`'s `Authorization: Bearer` grants; nil without a valid token.
    func scope(_ request: Request) async -> TokenScope? {
        guard let header = request.headers[.authorization], header.hasPrefix("Bearer ") else { return nil }
        return await scope(ofToken: String(header.dropFirst(7)))
    }

    /// The scope a token's text grants; nil for anything else.
    func scope(ofToken presented: String) async -> TokenScope? { await identify(presented)?.scope }

    /// Who a token's text is: its API token id (nil for the admin token), a name for audit
    /// records, and its scope; nil for anything else.
    func identify(_ presented: String) async -> (id: Int64?, who: String, scope: TokenScope)? {
        if let adminToken, ConstantTime.equals(Array(presented.utf8), adminToken.bytes) { return (nil, "the admin token", .admin) }
        guard let tokens, let token = await TokenText.identify(presented, in: tokens) else { return nil }
        return (token.id, "token \(token.name)", token.scope)
    }

    /// Who `request`'s bearer token is, for audit records; nil without a valid token.
    func who(_ request: Request) async -> String? {
        guard let header = request.headers[.authorization], header.hasPrefix("Bearer ") else { return nil }
        return await identify(String(header.dropFirst(7)))?.who
    }

    /// The signed-in session of `request`, while its API token is still live.
    func session(_ request: Request) async -> Sessions.Session? {
        guard let session = sessions.session(request) else { return nil }
        if let id = session.tokenID {
            guard let tokens, (try? await tokens.activeToken(id)) != nil else { return nil }
        }
        return session
    }

    /// A refusal when `request` does not grant `needed`; nil when it does.
    func refusal(_ request: Request, needs needed: TokenScope) async throws -> Response? {
        guard let scope = await scope(request) else {
            var answer = try JSONBody.error(
                .unauthorized,
                "send Authorization: Bearer <a \(needed.rawValue) token from `kiln token create --scope \(needed.rawValue)`, or server.admin-token-file's token>")
            answer.headers[.wwwAuthenticate] = "Bearer"
            return answer
        }
        guard scope >= needed else {
            return try JSONBody.error(.forbidden, "this token's scope is \(scope.rawValue); this needs \(needed.rawValue)")
        }
        return nil
    }
}

/// With `server.private: true`, everything but webhooks and `/health` needs a `read` token.
struct PrivateMiddleware: RouterMiddleware {
    typealias Context = BasicRequestContext
    let access: Access

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let path = request.uri.path
        if path.hasPrefix(WebhookController.pathPrefix) || path == "/health" { return try await next(request, context) }
        // A signed-in browser reads with its session; the sign-in page itself is open.
        if path == "/sign-in" || path == "/sign-out" { return try await next(request, context) }
        if await access.session(request) != nil { return try await next(request, context) }
        // A browser without credentials is sent to sign in rather than shown a JSON refusal.
        if request.headers[.authorization] == nil, request.headers[.accept]?.contains("text/html") == true {
            return Response(status: .seeOther, headers: [.location: "/sign-in"])
        }
        if let refusal = try await access.refusal(request, needs: .read) { return refusal }
        return try await next(request, context)
    }
}
