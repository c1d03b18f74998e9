import ArgumentParser
import Foundation
import KilnApp
import KilnCore
import KilnNix
import KilnPipeline
import Logging
import ServiceLifecycle

@main
struct Kiln: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kiln",
        abstract: "A CI bot for Nix projects: forge webhooks in, sandboxed nix builds, commit statuses out.",
        subcommands: [Serve.self, Check.self, Run.self, GC.self, TokenCommand.self, DoctorCommand.self])
}

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the server: receive webhooks, build, post statuses.",
        discussion: "Every scalar key of the configuration can be overridden by KILN_<KEY_PATH>, e.g. KILN_SERVER_LISTEN.")

    @Option(name: .long, help: "The configuration file.")
    var config = "config/kiln.yaml"

    @Option(name: .long, help: "trace, debug, info, notice, warning, error or critical.")
    var logLevel: Logger.Level = .info

    func run() async throws {
        let level = logLevel
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        let logger = Logger(label: "kiln")
        let configuration = try loadConfiguration(config)
        let group = try await KilnServer.make(configuration, logger: logger)
        try await group.run()
    }
}

extension Logger.Level: @retroactive ExpressibleByArgument {}

struct Check: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Validate a pipeline file; print FILE:LINE:COLUMN: MESSAGE for each problem and exit 1 if there are any.",
        discussion: "With --format json, print {file, valid, jobs, diagnostics: [{line, column, code, message}]} instead.")

    enum Format: String, ExpressibleByArgument, CaseIterable {
        case text, json
    }

    @Argument(help: "The pipeline file, or - for standard input.")
    var file = PipelineFile.name

    @Option(help: "text or json.")
    var format: Format = .text

    func run() throws {
        let data: Data
        if file == "-" {
            data = FileHandle.standardInput.readDataToEndOfFile()
        } else {
            guard let contents = FileManager.default.contents(atPath: file) else {
                FileHandle.standardError.write(Data("\(file): cannot read the file\n".utf8))
                throw ExitCode(1)
            }
            data = contents
        }
        let name = file == "-" ? "<stdin>" : file
        let result = PipelineFile.parse(Array(data))
        switch format {
        case .json:
            print(try CheckReport(file: name, result: result).json())
        case .text:
            switch result {
            case .valid(let spec):
                print("\(name): valid; \(spec.jobs.count) job\(spec.jobs.count == 1 ? "" : "s"): \(spec.jobs.map(\.name).joined(separator: ", "))")
            case .invalid(let diagnostics):
                for diagnostic in diagnostics { print(diagnostic.formatted(file: name)) }
            }
        }
        if case .invalid = result { throw ExitCode(1) }
    }
}

/// `kiln check --format json`.
struct CheckReport: Encodable {
    struct Problem: Encodable {
        var line: Int
        var column: Int
        var code: String
        var message: String
    }

    var file: String
    var valid: Bool
    var jobs: [String]
    var diagnostics: [Problem]

    init(file: String, result: PipelineFile.Result) {
        self.file = file
        switch result {
        case .valid(let spec):
            valid = true
            jobs = spec.jobs.map(\.name)
            diagnostics = []
        case .invalid(let found):
            valid = false
            jobs = []
            diagnostics = found.map { Problem(line: $0.line, column: $0.column, code: $0.code.rawValue, message: $0.message) }
        }
    }

    func json() throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return String(decoding: try encoder.encode(self), as: UTF8.self)
    }
}

struct Run: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Plan and run a local checkout's pipeline with the real nix executor, streaming logs.")

    @Option(name: .long, help: "The checkout to build.")
    var repo = "."

    @Option(name: .long, help: "Run only this job and the jobs it needs.")
    var job: String?

    @Option(name: .long, help: "The branch to plan for (default: the checkout's current branch).")
    var branch: String?

    @Option(name: .long, help: "Read nix settings and limits from this server configuration.")
    var config: String?

    func run() async throws {
        var nix = NixSettings()
        var limits = JobLimits.standard
        if let config {
            let configuration = try loadConfiguration(config)
            nix = configuration.nix.settings
            limits = configuration.nix.limits
        }
        let directory = URL(fileURLWithPath: repo).standardized.path
        let status = await LocalRun(repository: directory, job: job, branch: branch, nix: nix, limits: limits).run()
        if status != 0 { throw ExitCode(status) }
    }
}

struct GC: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gc",
        abstract: "Remove builds and their logs that ended longer ago than storage.retention; with --store, collect the nix store too.",
        discussion: """
            kiln serve removes old builds once a day, and collects the store daily when storage.min-free is set. \
            --store keeps the outputs of each branch's last storage.keep-outputs successful builds, then deletes what no \
            garbage-collector root keeps: until storage.min-free is free, or all of it when min-free is not set. \
            --optimise hard-links identical files in the store (nix store optimise). Safe to run while Kiln serves.
            """)

    @Option(name: .long, help: "The configuration file.")
    var config = "config/kiln.yaml"

    @Flag(name: .long, help: "Also collect the nix store's garbage.")
    var store = false

    @Flag(name: .long, help: "Also hard-link identical files in the nix store, and say how much that saved.")
    var optimise = false

    func run() async throws {
        let configuration = try loadConfiguration(config)
        let logger = Logger(label: "kiln")
        let removed = try await KilnServer.collectGarbage(configuration, logger: logger)
        print("removed \(removed.builds) build\(removed.builds == 1 ? "" : "s") and \(removed.jobs) job log\(removed.jobs == 1 ? "" : "s") older than \(KilnDuration.format(configuration.storage.retention))")
        guard store || optimise else { return }
        let result = try await KilnServer.collectStore(configuration, collect: store, optimise: optimise, logger: logger)
        if store {
            if let collected = result.collected {
                print("deleted \(collected.paths) store path\(collected.paths == 1 ? "" : "s"), freeing \(ByteCount.format(Int(collected.bytes)))")
            } else {
                print("the store has more than storage.min-free free; nothing collected")
            }
        }
        if let saved = result.saved { print("hard-linking identical files saved \(ByteCount.format(Int(saved)))") }
    }
}

/// The configuration at `path`; every problem in it on standard error and exit status 78
/// (EX_CONFIG) when it cannot be used.
func loadConfiguration(_ path: String) throws -> KilnConfiguration {
    do {
        return try KilnConfiguration.load(path: path)
    } catch {
        FileHandle.standardError.write(Data("kiln: the configuration cannot be used:\n\(error)\n".utf8))
        throw ExitCode(78)
    }
}
