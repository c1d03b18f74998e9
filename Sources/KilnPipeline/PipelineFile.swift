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
        "min-memory", "network", "env",
    ]

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

    private static func decodeTriggers(_ node: YAMLNode, _ reader: inout YAMLReader) -> Triggers? {
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

    private static func decodeFilter(_ node: YAMLNode, allowed: [String], _ reader: inout YAMLReader) -> EventFilter? {
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

    private static func decodeWhen(_ node: YAMLNode, _ reader: inout YAMLReader) -> JobFilter? {
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

    private static func decodeJobs(_ node: YAMLNode, _ reader: inout YAMLReader, _ decoded: inout Decoded) -> [JobSpec]? {
        guard let entries = reader.mapping(node, allowed: nil) else { return nil }
        if entries.isEmpty {
            reader.report(node, "'jobs' is empty; add at least one job with a 'build'", code: .missingKey)
            return nil
        }
        var jobs: [JobSpec] = []
        var valid = true
        decoded.names = Set(entries.map(\.key))
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
        decoded.jobs = jobs
        return valid ? jobs : nil
    }

    private static func decodeJob(name: String, _ node: YAMLNode, keyNode: YAMLNode, _ reader: inout YAMLReader)
        -> JobSpec?
    {
        guard let entries = reader.mapping(node, allowed: jobKeys) else { return nil }
        var job = JobSpec(
            name: name, target: .flakeCheck, location: SourceLocation(line: keyNode.line, column: keyNode.column))
        var valid = true
        var installables: [String]?
        var file: String?
        var attribute: (String, YAMLNode)?
        var check = false
        var targets: [String] = []
        for (key, value) in entries {
            switch key {
            case "build":
                targets.append(key)
                guard let items = reader.stringList(value, allowSingle: true) else {
                    valid = false
                    continue
                }
                if items.isEmpty {
                    reader.report(value, "'\(value.pathString)' is empty; list at least one installable", code: .invalidValue)
                    valid = false
                }
                installables = []
                for (installable, itemNode) in items {
                    if let problem = installableProblem(installable) {
                        reader.report(itemNode, problem, code: .invalidValue)
                        valid = false
                    } else {
                        installables?.append(installable)
                    }
                }
            case "file":
                targets.append(key)
                file = reader.nonEmptyString(value)
                if let path = file, let problem = filePathProblem(path) {
                    reader.report(value, problem, code: .invalidValue)
                    valid = false
                }
                valid = valid && file != nil
            case "attr":
                if let text = reader.nonEmptyString(value) {
                    attribute = (text, value)
                    if text.hasPrefix("-") || text.contains(where: \.isWhitespace) {
                        reader.report(value, "attr '\(text)' must be an attribute path such as 'hello' or 'tests.unit'", code: .invalidValue)
                        valid = false
                    }
                } else {
                    valid = false
                }
            case "check":
                targets.append(key)
                guard let flag = reader.bool(value) else {
                    valid = false
                    continue
                }
                if !flag {
                    reader.report(value, "'check: false' is the default; remove it, or give 'build' or 'file'", code: .invalidValue)
                    valid = false
                }
                check = flag
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
            case "systems":
                guard let items = reader.stringList(value, allowSingle: false) else {
                    valid = false
                    continue
                }
                if items.isEmpty {
                    reader.report(value, "'\(value.pathString)' is empty; list systems such as x86_64-linux", code: .invalidValue)
                    valid = false
                }
                for (system, itemNode) in items where !isValidSystem(system) {
                    reader.report(itemNode, "'\(system)' is not a nix system; write it like x86_64-linux or aarch64-darwin", code: .invalidValue)
                    valid = false
                }
                job.systems = items.map(\.0)
            case "when":
                job.when = decodeWhen(value, &reader)
                valid = valid && job.when != nil
            case "allow-failure":
                job.allowFailure = reader.bool(value) ?? false
            case "cache":
                guard let text = reader.string(value) else {
                    valid = false
                    continue
                }
                if text != "push" {
                    reader.report(value, "cache '\(text)' is not known; the only value is 'push'", code: .invalidValue)
                    valid = false
                }
                job.cachePush = text == "push"
            case "min-memory":
                job.minMemory = reader.byteSize(value)
                valid = valid && job.minMemory != nil
            case "network":
                if let flag = reader.bool(value), flag {
                    reader.report(
                        value,
                        "builds have no network: the Nix sandbox gives it only to fixed-output derivations; fetch inputs with a hash (fetchurl, a flake input) instead",
                        code: .invalidValue)
                    valid = false
                }
            case "env":
                reader.report(
                    Self.keyNode(of: "env", in: node) ?? value,
                    "'env' is not supported: builds are pure and see only their inputs; put values in the flake (an attribute, or a file in the repository)",
                    code: .unknownKey)
                valid = false
            default: break
            }
        }
        if targets.count > 1 {
            reader.report(keyNode, "job '\(name)' has \(targets.joined(separator: " and ")); give exactly one of build, file or check", code: .invalidValue)
            return nil
        }
        if let attribute, file == nil {
            reader.report(attribute.1, "'attr' needs 'file': the classic nix file it selects from", code: .missingKey)
            return nil
        }
        if let installables {
            job.target = .installables(installables)
        } else if let file {
            job.target = .classic(file: file, attribute: attribute?.0)
        } else if check {
            job.target = .flakeCheck
        } else if targets.isEmpty {
            // A misspelt 'build' is already reported as an unknown key with a suggestion.
            let misspeltBuild = Self.keys(of: node).contains { $0 != "build" && Suggestion.closest(to: $0, in: ["build"]) != nil }
            if !misspeltBuild {
                reader.report(
                    keyNode, "job '\(name)' has nothing to build; give 'build: .#\(name)', 'file' with 'attr', or 'check: true'",
                    code: .missingKey)
            }
            return nil
        }
        return valid ? job : nil
    }

    /// A nix system name: `x86_64-linux`, `aarch64-darwin`.
    static func isValidSystem(_ system: String) -> Bool {
        system.range(of: "^[a-z0-9_]+-[a-z0-9_]+$", options: .regularExpression) != nil
    }

    /// Why a classic nix file path cannot be used, or nil when it can.
    static func filePathProblem(_ path: String) -> String? {
        if path.hasPrefix("/") { return "file '\(path)' must be relative to the repository root" }
        if path.split(separator: "/").contains("..") { return "file '\(path)' must stay inside the repository" }
        if path.hasPrefix("-") { return "file '\(path)' starts with '-'; nix would read it as an option" }
        return nil
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
