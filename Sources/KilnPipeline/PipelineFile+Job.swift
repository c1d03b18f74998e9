import Foundation
/// Decoding `jobs` and each job: targets, limits, systems, filters.
extension PipelineFile {
    static func decodeJobs(_ node: YAMLNode, _ reader: inout YAMLReader, _ decoded: inout Decoded) -> [JobSpec]? {
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

    static func decodeJob(name: String, _ node: YAMLNode, keyNode: YAMLNode, _ reader: inout YAMLReader)
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
                    } else if let problem = JobTarget.installableConfinementProblem(installable) {
                        reader.report(itemNode, problem, code: .outsideRepository)
                        valid = false
                    } else {
                        installables?.append(installable)
                    }
                }
            case "file":
                targets.append(key)
                file = reader.nonEmptyString(value)
                if let path = file, let problem = JobTarget.fileConfinementProblem(path) {
                    reader.report(value, problem, code: .outsideRepository)
                    valid = false
                } else if let path = file, let problem = filePathProblem(path) {
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
                // Only fixed-output derivations reach the network; the executor refuses any other.
                guard let flag = reader.bool(value) else {
                    valid = false
                    continue
                }
                job.constraints.network = flag
            case "read-only-paths":
                guard let items = reader.stringList(value, allowSingle: true) else {
                    valid = false
                    continue
                }
                if items.count > BuildConstraints.maxReadOnlyPaths {
                    reader.report(value, "'\(value.pathString)' lists \(items.count) paths; at most \(BuildConstraints.maxReadOnlyPaths)", code: .invalidValue)
                    valid = false
                }
                for (path, itemNode) in items {
                    if let problem = BuildConstraints.readOnlyPathProblem(path) {
                        reader.report(itemNode, problem, code: .invalidValue)
                        valid = false
                    }
                }
                job.constraints.readOnlyPaths = items.map(\.0)
            case "tags":
                guard let entries = reader.mapping(value, allowed: nil) else {
                    valid = false
                    continue
                }
                if entries.count > maxTags {
                    reader.report(value, "'\(value.pathString)' has \(entries.count) tags; at most \(maxTags)", code: .invalidValue)
                    valid = false
                }
                for (tag, tagValue) in entries {
                    let tagNode = Self.keyNode(of: tag, in: value) ?? tagValue
                    if tag.range(of: "^[a-z0-9][a-z0-9_.-]{0,63}$", options: .regularExpression) == nil {
                        reader.report(tagNode, "tag name '\(tag)' must be lower-case letters, digits, '_', '.' and '-', at most 64 characters", code: .invalidValue)
                        valid = false
                    } else if reservedTags.contains(tag) {
                        reader.report(tagNode, "tag '\(tag)' is set by Kiln itself (\(reservedTags.sorted().joined(separator: ", ")))", code: .invalidValue)
                        valid = false
                    }
                    guard let text = reader.string(tagValue) else {
                        valid = false
                        continue
                    }
                    if text.count > 256 || text.contains(where: { $0.isNewline || $0 == "," }) {
                        reader.report(tagValue, "tag value of '\(tag)' must be one line without commas, at most 256 characters", code: .invalidValue)
                        valid = false
                    }
                    job.tags[tag] = text
                }
            case "provide-bin-sh":
                guard let flag = reader.bool(value) else {
                    valid = false
                    continue
                }
                job.constraints.provideBinSh = flag
            case "image":
                job.image = decodeImage(value, &reader)
                valid = valid && job.image != nil
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
        if let image = Self.keyNode(of: "image", in: node), job.image != nil {
            if check || (installables?.count ?? 1) != 1 {
                reader.report(image, "job '\(name)' pushes an image: it must build exactly one installable ('build: .#image') or a 'file'", code: .invalidValue)
                valid = false
            }
            if (job.systems?.count ?? 1) > 1 {
                reader.report(image, "job '\(name)' pushes an image: give it at most one system, or each system's image would replace the other's tags", code: .invalidValue)
                valid = false
            }
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
        if path.hasPrefix("-") { return "file '\(path)' starts with '-'; nix would read it as an option" }
        return nil
    }

    /// Why an installable cannot be passed to nix, or nil when it can.
    public static func installableProblem(_ installable: String) -> String? {
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
}
