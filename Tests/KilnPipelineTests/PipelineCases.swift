import Foundation
import KilnPipeline
import Testing

/// One pipeline file of the table in `Cases/`, with what it must become.
///
/// `Cases/valid/NAME.yml` plans to the lines of `NAME.expected` (one line per planned job, or
/// `skipped: REASON` / `announced skip: REASON`); `Cases/invalid/NAME.yml` gives the diagnostics
/// in `NAME.expected` (`LINE:COLUMN [code] message`). Comment lines at the top set the event:
///
///     # event: push refs/heads/main          (default) | pull_request BASE-BRANCH
///     # changed: docs/a.md src/b.nix         changed files (default: unknown)
///     # message: fix typo [skip ci]          head commit message (default: none)
///     # schema: accepts                      the JSON Schema cannot see this problem (semantic)
struct PipelineCase: CustomTestStringConvertible, Sendable {
    var name: String
    var valid: Bool
    var yaml: String
    var expected: [String]
    var event: PipelineEvent
    var schemaAccepts: Bool

    var testDescription: String { "\(valid ? "valid" : "invalid")/\(name)" }

    static let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Cases")

    static func load(_ kind: String) -> [PipelineCase] {
        let folder = directory.appendingPathComponent(kind)
        let files = (try? FileManager.default.contentsOfDirectory(atPath: folder.path)) ?? []
        return files.filter { $0.hasSuffix(".yml") }.sorted().map { file in
            let name = String(file.dropLast(4))
            let yaml = (try? String(contentsOf: folder.appendingPathComponent(file), encoding: .utf8)) ?? ""
            let expected = (try? String(contentsOf: folder.appendingPathComponent(name + ".expected"), encoding: .utf8)) ?? ""
            var event = PipelineEvent.push(.branch("main"))
            var schemaAccepts = false
            for line in yaml.split(separator: "\n") {
                guard line.hasPrefix("# ") else { break }
                let directive = line.dropFirst(2)
                if directive.hasPrefix("event: push ") {
                    event.kind = .push(GitRef(fullName: String(directive.dropFirst("event: push ".count)))!)
                } else if directive.hasPrefix("event: pull_request ") {
                    event.kind = .pullRequest(base: String(directive.dropFirst("event: pull_request ".count)))
                } else if directive.hasPrefix("changed:") {
                    event.changedFiles = directive.dropFirst("changed:".count).split(separator: " ").map(String.init)
                } else if directive.hasPrefix("message: ") {
                    event.commitMessage = String(directive.dropFirst("message: ".count))
                } else if directive == "schema: accepts" {
                    schemaAccepts = true
                }
            }
            return PipelineCase(
                name: name, valid: kind == "valid", yaml: yaml,
                expected: expected.split(separator: "\n").map(String.init), event: event, schemaAccepts: schemaAccepts)
        }
    }

    static let valid = load("valid")
    static let invalid = load("invalid")

    /// One line describing a planned job.
    static func describe(_ job: PlannedJob) -> String {
        let target: String
        switch job.target {
        case .installables(let installables): target = "build " + installables.joined(separator: " ")
        case .classic(let file, let attribute): target = "file \(file)" + (attribute.map { " -A \($0)" } ?? "")
        case .flakeCheck: target = "check"
        }
        var line = "\(job.name): \(target); needs \(job.needs.isEmpty ? "-" : job.needs.joined(separator: ", "))"
        line += "; timeout \(KilnDuration.format(job.timeout)); max-silent \(KilnDuration.format(job.maxSilent))"
        if let system = job.system { line += "; system \(system)" }
        if job.allowFailure { line += "; allow-failure" }
        if job.cachePush { line += "; cache push" }
        if let memory = job.minMemory { line += "; min-memory \(ByteCount.format(memory))" }
        if !job.tags.isEmpty { line += "; tags " + job.tags.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ") }
        if job.constraints.network { line += "; network" }
        if !job.constraints.readOnlyPaths.isEmpty { line += "; read-only " + job.constraints.readOnlyPaths.joined(separator: " ") }
        if job.constraints.provideBinSh { line += "; /bin/sh" }
        if let image = job.image {
            line += "; image \(image.repository):\(image.tags.joined(separator: ","))" + (image.required ? " required" : "")
        }
        return line
    }

    /// What planning produced, as lines comparable with `.expected`.
    func actual(limits: JobLimits = .standard) -> [String] {
        switch PipelineFile.parse(yaml) {
        case .invalid(let diagnostics):
            return diagnostics.map { "\($0.line):\($0.column) [\($0.code.rawValue)] \($0.message)" }
        case .valid(let spec):
            switch BuildPlan.make(spec, for: event, limits: limits) {
            case .skipped(let reason, let announce): return ["\(announce ? "announced skip" : "skipped"): \(reason)"]
            case .invalid(let diagnostics):
                return diagnostics.map { "\($0.line):\($0.column) [\($0.code.rawValue)] \($0.message)" }
            case .jobs(let jobs): return jobs.map(Self.describe)
            }
        }
    }
}
