/// One problem found in a pipeline file, at a 1-based line and column.
///
/// Diagnostics are values: the parser collects all of them rather than
/// throwing at the first, so `kiln check` and the build page can list them all.
public struct Diagnostic: Sendable, Hashable, CustomStringConvertible {
    /// A stable identifier for the kind of problem, for tools and tests.
    public enum Code: String, Sendable, Hashable {
        case tooLarge = "too-large"
        case notUTF8 = "not-utf8"
        case syntax
        case budget
        case unknownKey = "unknown-key"
        case wrongType = "wrong-type"
        case missingKey = "missing-key"
        case invalidValue = "invalid-value"
        case unknownNeed = "unknown-need"
        case cycle
        case exceedsLimit = "exceeds-limit"
        /// A job's target names a path or flake outside the repository.
        case outsideRepository = "outside-repository"
    }

    /// 1-based line of the offending node.
    public var line: Int
    /// 1-based column of the offending node.
    public var column: Int
    /// What is wrong and what to write instead.
    public var message: String
    /// The kind of problem.
    public var code: Code

    /// Creates a diagnostic.
    public init(line: Int, column: Int, message: String, code: Code) {
        self.line = line
        self.column = column
        self.message = message
        self.code = code
    }

    /// `line:column: message`.
    public var description: String { "\(line):\(column): \(message)" }

    /// `file:line:column: message`, the form compilers and editors understand.
    public func formatted(file: String) -> String { "\(file):\(description)" }
}
