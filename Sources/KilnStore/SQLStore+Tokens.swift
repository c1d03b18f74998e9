import Foundation
import GRDB
import KilnCore

/// API tokens: names, scopes and digests; never a token's text.
extension SQLStore: TokenStore {
    public func createToken(name: String, scope: TokenScope, digest: [UInt8], at now: Date) async throws -> APIToken {
        try await database.write { db in
            // A revoked token keeps its name, so that its uses stay attributable in logs.
            if try db.value(Bool.self, "SELECT 1 FROM api_tokens WHERE name = ?", [name]) == true {
                throw TokenError.nameTaken(name)
            }
            let id = try db.value(
                Int64.self, "INSERT INTO api_tokens (name, scope, digest, created_at) VALUES (?, ?, ?, ?) RETURNING id",
                [name, scope.rawValue, Data(digest), now.timeIntervalSince1970])
            return APIToken(id: id ?? 0, name: name, scope: scope, createdAt: now)
        }
    }

    public func tokens() async throws -> [APIToken] {
        try await database.read { db in
            try db.rows("SELECT * FROM api_tokens ORDER BY id").map { row in
                APIToken(
                    id: row["id"], name: row["name"],
                    scope: try Rows.enumValue(TokenScope.self, row["scope"], column: "api_tokens.scope"),
                    createdAt: Rows.date(row["created_at"])!, revokedAt: Rows.date(row["revoked_at"]))
            }
        }
    }

    public func revokeToken(name: String, at now: Date) async throws {
        try await database.write { db in
            let changed = try db.execute(
                "UPDATE api_tokens SET revoked_at = COALESCE(revoked_at, ?) WHERE name = ?", [now.timeIntervalSince1970, name])
            if changed == 0 { throw TokenError.unknown(name) }
        }
    }

    public func activeToken(_ id: Int64) async throws -> (name: String, scope: TokenScope, digest: [UInt8])? {
        try await database.read { db in
            guard
                let row = try db.row("SELECT name, scope, digest FROM api_tokens WHERE id = ? AND revoked_at IS NULL", [id]),
                let scope = TokenScope(rawValue: row["scope"])
            else { return nil }
            let digest: Data = row["digest"]
            return (row["name"], scope, Array(digest))
        }
    }
}
