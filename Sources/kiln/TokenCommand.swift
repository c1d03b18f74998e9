import ArgumentParser
import Foundation
import KilnApp
import Logging
import KilnCore

/// `kiln token create|list|revoke`: API tokens, kept as digests in the database.
struct TokenCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "token",
        abstract: "Create, list and revoke API tokens.",
        discussion: """
            A token's scope says what it may do: read (pages, logs, the API and events when server.private is true, \
            and /metrics), control (also cancel, re-run and approve) or admin (everything). Kiln keeps only a digest \
            of each token: the token is shown once, when it is created. Safe to run while Kiln serves.
            """,
        subcommands: [Create.self, List.self, Revoke.self])

    struct Options: ParsableArguments {
        @Option(name: .long, help: "The configuration file.")
        var config = "config/kiln.yaml"

        func store() async throws -> any TokenStore {
            try await KilnServer.tokenStore(try loadConfiguration(config), logger: Logger(label: "kiln"))
        }
    }

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Create a token and print it (once).")

        @OptionGroup var options: Options
        @Option(name: .long, help: "A name for the token (letters, digits, '.', '_', '-'), unique.")
        var name: String
        @Option(name: .long, help: "read, control or admin.")
        var scope: String

        func run() async throws {
            guard let scope = TokenScope(rawValue: scope) else {
                throw ValidationError("'\(scope)' is not a scope; use read, control or admin")
            }
            do {
                let (token, text) = try await TokenText.create(name: name, scope: scope, in: try await options.store())
                print(text)
                FileHandle.standardError.write(
                    Data("kiln: token '\(token.name)' (\(token.scope.rawValue)) created; it is not shown again\n".utf8))
            } catch let error as TokenError {
                FileHandle.standardError.write(Data("kiln: \(error)\n".utf8))
                throw ExitCode(1)
            }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List tokens: name, scope, when created, whether revoked.")

        @OptionGroup var options: Options

        func run() async throws {
            let format = ISO8601DateFormatter()
            for token in try await options.store().tokens() {
                let state = token.revokedAt.map { "revoked \(format.string(from: $0))" } ?? "active"
                print("\(token.name)\t\(token.scope.rawValue)\tcreated \(format.string(from: token.createdAt))\t\(state)")
            }
        }
    }

    struct Revoke: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Revoke a token: it stops working at once.")

        @OptionGroup var options: Options
        @Option(name: .long, help: "The token's name.")
        var name: String

        func run() async throws {
            do {
                try await options.store().revokeToken(name: name, at: Date())
                FileHandle.standardError.write(Data("kiln: token '\(name)' revoked\n".utf8))
            } catch let error as TokenError {
                FileHandle.standardError.write(Data("kiln: \(error)\n".utf8))
                throw ExitCode(1)
            }
        }
    }
}
