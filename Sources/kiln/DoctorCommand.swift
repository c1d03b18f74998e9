import ArgumentParser
import Foundation
import KilnApp

/// `kiln doctor`: checks this machine and configuration; exit 1 when anything fails.
struct DoctorCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "doctor",
        abstract: "Check nix, the build users, disk space, the database, each forge's credentials and clone URL, the cache and the public URL.",
        discussion: "Each check prints ✓ or ✗ and, when it fails, what to do. Exit status 1 when any check fails. Reads only.")

    @Option(name: .long, help: "The configuration file.")
    var config = "config/kiln.yaml"

    @Option(name: .long, help: "text (default) or json.")
    var format = "text"

    func run() async throws {
        guard ["text", "json"].contains(format) else { throw ValidationError("--format is text or json") }
        let checks = await Doctor(try loadConfiguration(config)).run()
        if format == "json" {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
            struct Report: Encodable {
                var ok: Bool
                var checks: [Doctor.Check]
            }
            print(String(decoding: try encoder.encode(Report(ok: checks.allSatisfy(\.ok), checks: checks)), as: UTF8.self))
        } else {
            for check in checks {
                print("\(check.ok ? "✓" : "✗") \(check.name): \(check.detail)" + (check.fix.map { "\n    → \($0)" } ?? ""))
            }
        }
        if checks.contains(where: { !$0.ok }) { throw ExitCode(1) }
    }
}
