import Yams
/// Reads `.kiln.yml` into a `PipelineSpec`, or every problem found in it.
///
/// Pure: no I/O, no clock. The file is checked for size and YAML budget
/// before it is composed, then decoded strictly: unknown keys, wrong types,
/// unknown `needs` and cycles are all diagnostics with `line:column`.
public enum PipelineFile {
    /// The conventional file name, at the repository root.
    public static let name = ".kiln.yml"
    /// Files larger than this are refused before parsing.
    public static let maxBytes = 256 * 1024

    /// Keys allowed at the top level.
    static let topKeys = ["on", "jobs"]
    /// Keys allowed under `on` and in a per-event `when`.
    static let eventKeys = ["push", "pull_request"]
    /// Keys allowed in a push filter.
    static let pushFilterKeys = ["branches", "tags", "paths", "paths-ignore"]
    /// Keys allowed in a pull request filter.
    static let pullRequestFilterKeys = ["branches", "paths", "paths-ignore"]
    /// Keys allowed in a job.
    static let jobKeys = [
        "build", "file", "attr", "check", "needs", "timeout", "max-silent", "systems", "when", "allow-failure", "cache",
        "min-memory", "network", "env", "image", "read-only-paths", "provide-bin-sh", "tags",
    ]

    /// Tags Kiln sets on every build record itself.
    public static let reservedTags: Set<String> = ["repository", "ref", "job", "service"]
    /// At most this many tags per job, each name at most 64 characters and each value 256.
    static let maxTags = 16

    /// The result of reading a pipeline file.
    public enum Result: Sendable, Equatable {
        /// The file is valid.
        case valid(PipelineSpec)
        /// The file has problems, in the order they were found; never empty.
        case invalid([Diagnostic])
    }

    /// Parses and validates the bytes of a pipeline file.
    public static func parse(_ bytes: [UInt8]) -> Result {
        let root: YAMLNode
        switch YAMLDocument.load(bytes, what: "pipeline file \(name)", maxBytes: maxBytes) {
        case .failure(let problem): return .invalid([problem.diagnostic])
        case .success(let node): root = node
        }
        var reader = YAMLReader()
        var decoded = Decoded()
        let spec = decode(root, &reader, &decoded)
        var diagnostics = reader.problems.map(\.diagnostic)
        // Jobs that decoded are checked against every job name, even when others did not.
        diagnostics += validateGraph(decoded.jobs, names: decoded.names)
        if let spec, diagnostics.isEmpty { return .valid(spec) }
        if diagnostics.isEmpty {
            diagnostics = [Diagnostic(line: 1, column: 1, message: "pipeline file is invalid", code: .syntax)]
        }
        return .invalid(diagnostics.sorted { ($0.line, $0.column) < ($1.line, $1.column) })
    }

    /// Parses a string; convenient for tests and `kiln check` on stdin.
    public static func parse(_ text: String) -> Result { parse(Array(text.utf8)) }

    /// Jobs that decoded, and every job name in the file, whatever became of the rest.
    struct Decoded {
        var jobs: [JobSpec] = []
        var names: Set<String> = []
    }

    private static func decode(_ root: YAMLNode, _ reader: inout YAMLReader, _ decoded: inout Decoded) -> PipelineSpec? {
        if root.isNull {
            reader.report(root, "pipeline file is empty; it needs a 'jobs' mapping", code: .missingKey)
            return nil
        }
        guard let entries = reader.mapping(root, allowed: topKeys) else { return nil }
        var triggers: Triggers?
        var jobs: [JobSpec]?
        var valid = true
        for (key, value) in entries {
            switch key {
            case "on":
                triggers = decodeTriggers(value, &reader)
                valid = valid && triggers != nil
            case "jobs": jobs = decodeJobs(value, &reader, &decoded)
            default: break
            }
        }
        guard let jobs else {
            if !entries.contains(where: { $0.key == "jobs" }) {
                reader.report(root, "pipeline file has no 'jobs'; add at least one job with a 'build'", code: .missingKey)
            }
            return nil
        }
        return valid ? PipelineSpec(triggers: triggers, jobs: jobs) : nil
    }

    static func decodeTriggers(_ node: YAMLNode, _ reader: inout YAMLReader) -> Triggers? {
        guard let entries = reader.mapping(node, allowed: eventKeys) else { return nil }
        var triggers = Triggers(push: nil, pullRequest: nil)
        var valid = true
        for (key, value) in entries {
            guard let filter = decodeFilter(value, allowed: key == "push" ? pushFilterKeys : pullRequestFilterKeys, &reader)
            else {
                valid = false
                continue
            }
            if key == "push" { triggers.push = filter } else { triggers.pullRequest = filter }
        }
        return valid ? triggers : nil
    }

    static func decodeFilter(_ node: YAMLNode, allowed: [String], _ reader: inout YAMLReader) -> EventFilter? {
        if node.isNull { return EventFilter() }
        guard let entries = reader.mapping(node, allowed: allowed) else { return nil }
        var filter = EventFilter()
        var valid = true
        for (key, value) in entries {
            guard let patterns = reader.stringList(value, allowSingle: true) else {
                valid = false
                continue
            }
            let globs = patterns.map { Glob($0.0) }
            switch key {
            case "branches": filter.branches = globs
            case "tags": filter.tags = globs
            case "paths": filter.paths = globs
            default: filter.pathsIgnore = globs
            }
        }
        if filter.paths != nil, filter.pathsIgnore != nil {
            reader.report(node, "'\(node.pathString)' has both 'paths' and 'paths-ignore'; give one of them", code: .invalidValue)
            valid = false
        }
        return valid ? filter : nil
    }

    static func decodeWhen(_ node: YAMLNode, _ reader: inout YAMLReader) -> JobFilter? {
        guard case .mapping(let pairs) = node.node else {
            reader.report(node, "'\(node.pathString)' must be a mapping, not \(YAMLReader.kind(of: node.node))", code: .wrongType)
            return nil
        }
        let keys = pairs.compactMap { $0.key.string }
        if !keys.isEmpty, keys.allSatisfy(eventKeys.contains) {
            return decodeTriggers(node, &reader).map(JobFilter.perEvent)
        }
        if keys.contains(where: eventKeys.contains) {
            reader.report(
                node,
                "'\(node.pathString)' mixes events (push, pull_request) with filters (branches, paths); use one form",
                code: .invalidValue)
            return nil
        }
        return decodeFilter(node, allowed: pushFilterKeys, &reader).map(JobFilter.anyEvent)
    }

    static func keys(of mapping: YAMLNode) -> [String] {
        guard case .mapping(let pairs) = mapping.node else { return [] }
        return pairs.compactMap { $0.key.string }
    }

    static func keyNode(of key: String, in mapping: YAMLNode) -> YAMLNode? {
        guard case .mapping(let pairs) = mapping.node else { return nil }
        for (keyNode, _) in pairs where keyNode.string == key {
            return YAMLNode(node: keyNode, path: mapping.path + [key])
        }
        return nil
    }

    /// Unknown `needs` (against `names`, every job in the file), self-dependencies and cycles.
    static func validateGraph(_ jobs: [JobSpec], names: Set<String>) -> [Diagnostic] {
        var diagnostics: [Diagnostic] = []
        for job in jobs {
            for (index, need) in job.needs.enumerated() where !names.contains(need) || need == job.name {
                let at = index < job.needLocations.count ? job.needLocations[index] : job.location
                let message: String
                if need == job.name {
                    message = "job '\(job.name)' needs itself"
                } else if let suggestion = Suggestion.closest(to: need, in: names.filter { $0 != job.name }.sorted()) {
                    message = "job '\(job.name)' needs '\(need)', which is not a job — did you mean '\(suggestion)'?"
                } else {
                    message = "job '\(job.name)' needs '\(need)', which is not a job in this file"
                }
                diagnostics.append(Diagnostic(line: at.line, column: at.column, message: message, code: .unknownNeed))
            }
        }
        guard diagnostics.isEmpty else { return diagnostics }
        if let cycle = JobGraph.findCycle(jobs) {
            let first = jobs.first { $0.name == cycle[0] }!
            diagnostics.append(
                Diagnostic(
                    line: first.location.line, column: first.location.column,
                    message: "jobs depend on each other in a cycle: \(cycle.joined(separator: " → ")) → \(cycle[0])",
                    code: .cycle))
        }
        return diagnostics
    }
}
