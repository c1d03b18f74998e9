import Yams

/// Reads YAML nodes strictly, collecting every problem instead of stopping at the first.
///
/// Wrong types, unknown keys and missing keys are reported with the node's
/// path and position; nothing falls back to a default.
public struct YAMLReader {
    /// Everything found so far, in document order of discovery.
    public private(set) var problems: [YAMLProblem] = []

    /// Creates an empty reader.
    public init() {}

    /// Records a problem at `node`.
    public mutating func report(_ node: YAMLNode, _ message: String, code: Diagnostic.Code) {
        problems.append(
            YAMLProblem(path: node.pathString, line: node.line, column: node.column, message: message, code: code))
    }

    /// The entries of a mapping, in order, after checking every key against `allowed`.
    /// Unknown keys are reported (with a suggestion when one is close) and left out.
    /// Returns nil, after reporting, when the node is not a mapping.
    public mutating func mapping(_ node: YAMLNode, allowed: [String]?) -> [(key: String, value: YAMLNode)]? {
        guard case .mapping(let mapping) = node.node else {
            report(node, "\(label(node)) must be a mapping, not \(Self.kind(of: node.node))", code: .wrongType)
            return nil
        }
        var entries: [(key: String, value: YAMLNode)] = []
        for (keyNode, valueNode) in mapping {
            let keyAt = YAMLNode(node: keyNode, path: node.path)
            guard case .scalar(let scalar) = keyNode else {
                report(keyAt, "keys must be plain strings", code: .wrongType)
                continue
            }
            let key = scalar.string
            if let allowed, !allowed.contains(key) {
                let where_ = node.path.isEmpty ? "" : " in '\(node.pathString)'"
                var message = "unknown key '\(key)'\(where_)"
                if let suggestion = Suggestion.closest(to: key, in: allowed) {
                    message += " — did you mean '\(suggestion)'?"
                } else {
                    message += "; expected one of: \(allowed.joined(separator: ", "))"
                }
                report(YAMLNode(node: keyNode, path: node.path + [key]), message, code: .unknownKey)
                continue
            }
            entries.append((key, YAMLNode(node: valueNode, path: node.path + [key])))
        }
        return entries
    }

    /// A string scalar. Numbers, booleans and nulls are reported, not converted.
    public mutating func string(_ node: YAMLNode) -> String? {
        if case .scalar(let scalar) = node.node, node.node.tag.rawValue == Tag.Name.str.rawValue {
            return scalar.string
        }
        report(node, "\(label(node)) must be a string, not \(Self.kind(of: node.node))", code: .wrongType)
        return nil
    }

    /// A non-empty string.
    public mutating func nonEmptyString(_ node: YAMLNode) -> String? {
        guard let value = string(node) else { return nil }
        guard !value.isEmpty else {
            report(node, "\(label(node)) must not be empty", code: .invalidValue)
            return nil
        }
        return value
    }

    /// A list of strings; a single string is accepted as a list of one when `allowSingle`.
    public mutating func stringList(_ node: YAMLNode, allowSingle: Bool) -> [(String, YAMLNode)]? {
        if allowSingle, case .scalar = node.node {
            return string(node).map { [($0, node)] }
        }
        guard case .sequence(let sequence) = node.node else {
            let expected = allowSingle ? "a string or a list of strings" : "a list of strings"
            report(node, "\(label(node)) must be \(expected), not \(Self.kind(of: node.node))", code: .wrongType)
            return nil
        }
        var values: [(String, YAMLNode)] = []
        var allValid = true
        for (index, item) in sequence.enumerated() {
            let itemNode = YAMLNode(node: item, path: node.path + ["[\(index)]"])
            if let value = string(itemNode) { values.append((value, itemNode)) } else { allValid = false }
        }
        return allValid ? values : nil
    }

    /// A list of nodes.
    public mutating func list(_ node: YAMLNode) -> [YAMLNode]? {
        guard case .sequence(let sequence) = node.node else {
            report(node, "\(label(node)) must be a list, not \(Self.kind(of: node.node))", code: .wrongType)
            return nil
        }
        return sequence.enumerated().map { YAMLNode(node: $1, path: node.path + ["[\($0)]"]) }
    }

    /// An integer within `range`.
    public mutating func integer(_ node: YAMLNode, in range: ClosedRange<Int>) -> Int? {
        guard case .scalar(let scalar) = node.node, node.node.tag.rawValue == Tag.Name.int.rawValue, let value = Int(scalar.string) else {
            report(node, "\(label(node)) must be a whole number, not \(Self.kind(of: node.node))", code: .wrongType)
            return nil
        }
        guard range.contains(value) else {
            report(node, "\(label(node)) is \(value); it must be between \(range.lowerBound) and \(range.upperBound)",
                code: .invalidValue)
            return nil
        }
        return value
    }

    /// A boolean (`true` / `false`).
    public mutating func bool(_ node: YAMLNode) -> Bool? {
        if case .scalar(let scalar) = node.node, node.node.tag.rawValue == Tag.Name.bool.rawValue {
            return ["true", "True", "TRUE", "yes", "Yes", "YES", "on", "On", "ON"].contains(scalar.string)
        }
        report(node, "\(label(node)) must be true or false, not \(Self.kind(of: node.node))", code: .wrongType)
        return nil
    }

    /// A size in bytes written `512MiB`, `4G`, `2GB` (binary units: 1G = 1024³ bytes), or a plain number of bytes.
    public mutating func byteSize(_ node: YAMLNode) -> Int? {
        guard case .scalar(let scalar) = node.node, [Tag.Name.str.rawValue, Tag.Name.int.rawValue].contains(node.node.tag.rawValue)
        else {
            report(node, "\(label(node)) must be a size such as 512MiB or 4GiB, not \(Self.kind(of: node.node))", code: .wrongType)
            return nil
        }
        guard let bytes = ByteCount.parse(scalar.string) else {
            report(node, "\(label(node)): '\(scalar.string)' is not a size; write it like 512MiB or 4GiB", code: .invalidValue)
            return nil
        }
        return bytes
    }

    /// A duration written `30s`, `5m`, `1h`, `1h30m`.
    public mutating func duration(_ node: YAMLNode) -> Duration? {
        let text: String
        if case .scalar(let scalar) = node.node, node.node.tag.rawValue == Tag.Name.str.rawValue || node.node.tag.rawValue == Tag.Name.int.rawValue {
            text = scalar.string
        } else {
            report(node, "\(label(node)) must be a duration such as 30s, 5m or 1h30m, not \(Self.kind(of: node.node))",
                code: .wrongType)
            return nil
        }
        guard let duration = KilnDuration.parse(text) else {
            let hint = Int(text) != nil ? " (add a unit: '\(text)s' or '\(text)m')" : ""
            report(node, "\(label(node)): '\(text)' is not a duration; write it like 30s, 5m, 1h or 1h30m\(hint)",
                code: .invalidValue)
            return nil
        }
        return duration
    }

    private func label(_ node: YAMLNode) -> String {
        node.path.isEmpty ? "the document" : "'\(node.pathString)'"
    }

    /// How a node is called in messages.
    static func kind(of node: Node) -> String {
        switch node {
        case .mapping: return "a mapping"
        case .sequence: return "a list"
        case .alias: return "an alias"
        case .scalar(let scalar):
            switch node.tag.rawValue {
            case Tag.Name.null.rawValue: return "empty"
            case Tag.Name.bool.rawValue: return "a boolean (\(scalar.string))"
            case Tag.Name.int.rawValue: return "a number (\(scalar.string))"
            case Tag.Name.float.rawValue: return "a number (\(scalar.string))"
            default: return "a string"
            }
        }
    }
}

/// "Did you mean" suggestions by edit distance.
enum Suggestion {
    /// The candidate closest to `word`, if it is close enough to be a likely typo.
    static func closest(to word: String, in candidates: [String]) -> String? {
        let scored = candidates.map { ($0, distance(word.lowercased(), $0.lowercased())) }
        guard let best = scored.min(by: { $0.1 < $1.1 }) else { return nil }
        // One edit turns any one- or two-letter word into another: too short to guess at.
        guard word.count >= 3 else { return nil }
        return best.1 <= max(1, min(word.count, best.0.count) / 3) ? best.0 : nil
    }

    /// Damerau–Levenshtein distance (optimal string alignment), so "bulid" → "build" is 1.
    static func distance(_ a: String, _ b: String) -> Int {
        let a = Array(a)
        let b = Array(b)
        if a.isEmpty { return b.count }
        if b.isEmpty { return a.count }
        var table = [[Int]](repeating: [Int](repeating: 0, count: b.count + 1), count: a.count + 1)
        for i in 0...a.count { table[i][0] = i }
        for j in 0...b.count { table[0][j] = j }
        for i in 1...a.count {
            for j in 1...b.count {
                let cost = a[i - 1] == b[j - 1] ? 0 : 1
                table[i][j] = min(table[i - 1][j] + 1, table[i][j - 1] + 1, table[i - 1][j - 1] + cost)
                if i > 1, j > 1, a[i - 1] == b[j - 2], a[i - 2] == b[j - 1] {
                    table[i][j] = min(table[i][j], table[i - 2][j - 2] + 1)
                }
            }
        }
        return table[a.count][b.count]
    }
}
