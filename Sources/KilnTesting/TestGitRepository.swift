import Foundation

/// A git repository made with the real `git` command, for tests.
public struct TestGitRepository: Sendable {
    /// Its directory.
    public let path: String

    /// Initialises a repository at `path` with branch `main`.
    public init(at path: String) throws {
        self.path = path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        try git(["init", "--quiet", "--initial-branch=main"])
    }

    /// Writes `contents` to `file` (relative), creating directories.
    public func write(_ file: String, _ contents: String) throws {
        let url = URL(fileURLWithPath: path).appendingPathComponent(file)
        try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        try contents.write(to: url, atomically: true, encoding: .utf8)
    }

    /// Stages everything and commits; returns the new commit id.
    @discardableResult
    public func commit(_ message: String = "change") throws -> String {
        try git(["add", "--all"])
        try git(["-c", "user.name=Kiln Test", "-c", "user.email=test@kiln.invalid", "commit", "--quiet", "--allow-empty", "-m", message])
        return try git(["rev-parse", "HEAD"]).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// Switches to a new branch.
    public func branch(_ name: String) throws { try git(["checkout", "--quiet", "-b", name]) }

    /// Runs git in the repository and returns its standard output.
    @discardableResult
    public func git(_ arguments: [String]) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/git")
        process.arguments = ["-C", path] + arguments
        let output = Pipe()
        let errors = Pipe()
        process.standardOutput = output
        process.standardError = errors
        try process.run()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        let errorData = errors.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw CommandFailed(arguments: arguments, message: String(decoding: errorData, as: UTF8.self))
        }
        return String(decoding: data, as: UTF8.self)
    }
}

/// A command that failed in a test.
public struct CommandFailed: Error, CustomStringConvertible {
    /// Its arguments.
    public var arguments: [String]
    /// Its standard error.
    public var message: String
    public var description: String { "git \(arguments.joined(separator: " ")) failed: \(message)" }
}
