import Foundation
import Yams

/// A node of a YAML document together with where it is: its key path and position.
public struct YAMLNode {
    /// The composed node; Yams' type stays inside KilnPipeline.
    let node: Node
    /// Keys (and `[index]` for list items) from the root to this node.
    public let path: [String]
    /// 1-based line.
    public var line: Int { node.mark?.line ?? 1 }
    /// 1-based column.
    public var column: Int { node.mark?.column ?? 1 }
    /// The path written with dots: `forges.github.token-file`, `jobs.hello.needs[1]`.
    public var pathString: String {
        path.reduce(into: "") { text, part in
            if part.hasPrefix("[") || text.isEmpty { text += part } else { text += ".\(part)" }
        }
    }
    /// True for `~`, `null` and an empty value.
    public var isNull: Bool {
        if case .scalar = node { return node.tag.rawValue == Tag.Name.null.rawValue }
        return false
    }

    /// The text of a scalar; nil for a mapping or a sequence.
    public var scalarText: String? {
        if case .scalar(let scalar) = node { return scalar.string }
        return nil
    }
    /// How many items a sequence holds; nil for anything else.
    public var sequenceCount: Int? {
        if case .sequence(let items) = node { return items.count }
        return nil
    }
    /// What the node is, for messages: `a mapping`, `a list`, `a string`…
    public var kind: String { YAMLReader.kind(of: node) }

    /// Wraps a node at `path`.
    init(node: Node, path: [String]) {
        self.node = node
        self.path = path
    }
}

/// A problem met while reading a YAML document strictly.
public struct YAMLProblem: Error, Sendable, Hashable {
    /// Key path of the offending node (`jobs.hello.build`); empty for the document.
    public var path: String
    /// 1-based line.
    public var line: Int
    /// 1-based column.
    public var column: Int
    /// What is wrong and what to write instead.
    public var message: String
    /// The kind of problem.
    public var code: Diagnostic.Code

    /// The same problem as a pipeline diagnostic.
    public var diagnostic: Diagnostic { Diagnostic(line: line, column: column, message: message, code: code) }
}

/// Loads YAML bytes under a size cap and a node budget.
public enum YAMLDocument {
    /// Parses `bytes` into a root node, or returns the first problem.
    /// A document that is empty or only comments yields a null root.
    ///
    /// - Parameters:
    ///   - what: How the document is named in messages ("pipeline file .kiln.yml").
    ///   - maxBytes: Size cap, checked before anything is parsed.
    public static func load(_ bytes: [UInt8], what: String, maxBytes: Int) -> Result<YAMLNode, YAMLProblem> {
        func problem(_ message: String, _ code: Diagnostic.Code, line: Int = 1, column: Int = 1) -> YAMLProblem {
            YAMLProblem(path: "", line: line, column: column, message: message, code: code)
        }
        guard bytes.count <= maxBytes else {
            return .failure(
                problem(
                    "\(what) is \(ByteCount.format(bytes.count)); the limit is \(ByteCount.format(maxBytes))",
                    .tooLarge))
        }
        guard let text = String(validating: bytes, as: UTF8.self) else {
            return .failure(problem("\(what) is not valid UTF-8 text", .notUTF8))
        }
        if let diagnostic = YAMLBudget().check(bytes) {
            return .failure(problem(diagnostic.message, diagnostic.code, line: diagnostic.line, column: diagnostic.column))
        }
        do {
            let root = try Yams.compose(yaml: text) ?? Node("", .init(.null))
            return .success(YAMLNode(node: root, path: []))
        } catch let error as YamlError {
            return .failure(Self.problem(from: error))
        } catch {
            return .failure(problem("\(what) could not be read: \(error)", .syntax))
        }
    }

    private static func problem(from error: YamlError) -> YAMLProblem {
        switch error {
        case .scanner(_, let message, let mark, _), .parser(_, let message, let mark, _),
            .composer(_, let message, let mark, _):
            return YAMLProblem(
                path: "", line: mark.line, column: mark.column, message: "YAML syntax error: \(message)", code: .syntax)
        case .duplicatedKeysInMapping(let duplicates, let context):
            return YAMLProblem(
                path: "", line: context.mark.line, column: context.mark.column,
                message: "duplicate key '\(duplicates.joined(separator: "', '"))'; each key may appear once",
                code: .syntax)
        default:
            return YAMLProblem(path: "", line: 1, column: 1, message: "YAML error: \(error)", code: .syntax)
        }
    }
}

