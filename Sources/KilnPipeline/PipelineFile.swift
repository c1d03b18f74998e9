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
    /// Keys allowed under `on`.
    static let eventKeys = ["push", "pull_request"]
    /// Keys allowed in a ref filter.
    static let filterKeys = ["branches", "tags"]
    /// Keys allowed in a job.
    static let jobKeys = ["build", "needs", "timeout", "max-silent"]

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
        let spec = decode(root, &reader)
        var diagnostics = reader.problems.map(\.diagnostic)
        if let spec { diagnostics += validateGraph(spec.jobs) }
        if let spec, diagnostics.isEmpty { return .valid(spec) }
        if diagnostics.isEmpty {
            diagnostics = [Diagnostic(line: 1, column: 1, message: "pipeline file is invalid", code: .syntax)]
        }
        return .invalid(diagnostics.sorted { ($0.line, $0.column) < ($1.line, $1.column) })
    }

    /// Parses a string; convenient for tests and `kiln check` on stdin.
    public static func parse(_ text: String) -> Result { parse(Array(text.utf8)) }

    private static func decode(_ root: YAMLNode, _ reader: inout YAMLReader) -> PipelineSpec? {
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
            case "jobs": jobs = decodeJobs(value, &reader)
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

    private static func decodeTriggers(_ node: YAMLNode, _ reader: inout YAMLReader) -> Triggers? {
        guard let entries = reader.mapping(node, allowed: eventKeys) else { return nil }
        var triggers = Triggers(push: nil, pullRequest: nil)
        var valid = true
        for (key, value) in entries {
            guard let filter = decodeFilter(value, allowTags: key == "push", &reader) else {
                valid = false
                continue
            }
            if key == "push" { triggers.push = filter } else { triggers.pullRequest = filter }
        }
        return valid ? triggers : nil
    }

    private static func decodeFilter(_ node: YAMLNode, allowTags: Bool, _ reader: inout YAMLReader) -> RefFilter? {
        if node.isNull { return RefFilter() }
        guard let entries = reader.mapping(node, allowed: allowTags ? filterKeys : ["branches"]) else { return nil }
        var filter = RefFilter()
        var valid = true
        for (key, value) in entries {
            guard let patterns = reader.stringList(value, allowSingle: true) else {
                valid = false
                continue
            }
            let globs = patterns.map { Glob($0.0) }
            if key == "branches" { filter.branches = globs } else { filter.tags = globs }
        }
        return valid ? filter : nil
    }

    private static func decodeJobs(_ node: YAMLNode, _ reader: inout YAMLReader) -> [JobSpec]? {
        guard let entries = reader.mapping(node, allowed: nil) else { return nil }
        if entries.isEmpty {
            reader.report(node, "'jobs' is empty; add at least one job with a 'build'", code: .missingKey)
            return nil
        }
        var jobs: [JobSpec] = []
        var valid = true
        for (name, value) in entries {
            guard let keyNode = keyNode(of: name, in: node) else { continue }
            guard isValidJobName(name) else {
                reader.report(
                    keyNode,
                    "job name '\(name)' is not allowed; use letters, digits, '-', '_' and '.', start with a letter or digit, at most 40 characters",
                    code: .invalidValue)
                valid = false
                continue
            }
            if let job = decodeJob(name: name, value, keyNode: keyNode, &reader) { jobs.append(job) } else { valid = false }
        }
        return valid ? jobs : nil
    }

    private static func decodeJob(name: String, _ node: YAMLNode, keyNode: YAMLNode, _ reader: inout YAMLReader)
        -> JobSpec?
    {
        guard let entries = reader.mapping(node, allowed: jobKeys) else { return nil }
        var job = JobSpec(name: name, installables: [], location: SourceLocation(line: keyNode.line, column: keyNode.column))
        var valid = true
        var sawBuild = false
        for (key, value) in entries {
            switch key {
            case "build":
                sawBuild = true
                guard let items = reader.stringList(value, allowSingle: true) else {
                    valid = false
                    continue
                }
                if items.isEmpty {
                    reader.report(value, "'\(value.pathString)' is empty; list at least one installable", code: .invalidValue)
                    valid = false
                }
                for (installable, itemNode) in items {
                    if let problem = installableProblem(installable) {
                        reader.report(itemNode, problem, code: .invalidValue)
                        valid = false
                    } else {
                        job.installables.append(installable)
                    }
                }
            case "needs":
                guard let items = reader.stringList(value, allowSingle: true) else {
                    valid = false
                    continue
                }
                job.needs = items.map(\.0)
                job.needLocations = items.map { SourceLocation(line: $0.1.line, column: $0.1.column) }
            case "timeout":
                job.timeout = reader.duration(value)
                valid = valid && job.timeout != nil
            case "max-silent":
                job.maxSilent = reader.duration(value)
                valid = valid && job.maxSilent != nil
            default: break
            }
        }
        // A misspelt 'build' is already reported as an unknown key with a suggestion.
        let misspeltBuild = Self.keys(of: node).contains { $0 != "build" && Suggestion.closest(to: $0, in: ["build"]) != nil }
        if !sawBuild, !misspeltBuild {
            reader.report(keyNode, "job '\(name)' has no 'build'; give a flake installable such as '.#\(name)'",
                code: .missingKey)
        }
        if !sawBuild { valid = false }
        return valid ? job : nil
    }

    /// Why an installable cannot be passed to nix, or nil when it can.
    static func installableProblem(_ installable: String) -> String? {
        if installable.isEmpty { return "an installable must not be empty" }
        if installable.hasPrefix("-") {
            return "installable '\(installable)' starts with '-'; nix would read it as an option"
        }
        if installable.contains(where: { $0.isWhitespace || $0.asciiValue.map { $0 < 0x20 } == true }) {
            return "installable '\(installable)' contains whitespace; give each installable as its own list item"
        }
        return nil
    }

    /// Job names become status contexts (`kiln/<name>`), log file names never.
    static func isValidJobName(_ name: String) -> Bool {
        guard let first = name.unicodeScalars.first, name.count <= 40 else { return false }
        let allowed = { (scalar: Unicode.Scalar) in
            scalar.isASCII && (scalar.properties.isAlphabetic || ("0"..."9").contains(scalar) || "-_.".unicodeScalars.contains(scalar))
        }
        return allowed(first) && !"-_.".unicodeScalars.contains(first) && name.unicodeScalars.allSatisfy(allowed)
    }

    private static func keys(of mapping: YAMLNode) -> [String] {
        guard case .mapping(let pairs) = mapping.node else { return [] }
        return pairs.compactMap { $0.key.string }
    }

    private static func keyNode(of key: String, in mapping: YAMLNode) -> YAMLNode? {
        guard case .mapping(let pairs) = mapping.node else { return nil }
        for (keyNode, _) in pairs where keyNode.string == key {
            return YAMLNode(node: keyNode, path: mapping.path + [key])
        }
        return nil
    }

    /// Unknown `needs`, self-dependencies and cycles.
    static func validateGraph(_ jobs: [JobSpec]) -> [Diagnostic] {
        var diagnostics: [Diagnostic] = []
        let names = Set(jobs.map(\.name))
        for job in jobs {
            for (index, need) in job.needs.enumerated() where !names.contains(need) || need == job.name {
                let at = index < job.needLocations.count ? job.needLocations[index] : job.location
                let message: String
                if need == job.name {
                    message = "job '\(job.name)' needs itself"
                } else if let suggestion = Suggestion.closest(to: need, in: Array(names)) {
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
