import Foundation

/// A fresh directory under the system's temporary directory, removed by `remove()`.
public struct TemporaryDirectory: Sendable {
    /// Absolute path.
    public let path: String

    /// Creates a uniquely named directory.
    public init(_ label: String = "kiln-test") throws {
        path = NSTemporaryDirectory().appending("\(label)-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    /// A path inside the directory.
    public func appending(_ component: String) -> String { "\(path)/\(component)" }

    /// Deletes the directory and everything in it.
    public func remove() { try? FileManager.default.removeItem(atPath: path) }
}

/// Runs `body` with a temporary directory that is removed afterwards.
public func withTemporaryDirectory<T>(_ label: String = "kiln-test", _ body: (TemporaryDirectory) async throws -> T)
    async throws -> T
{
    let directory = try TemporaryDirectory(label)
    defer { directory.remove() }
    return try await body(directory)
}

/// `withTemporaryDirectory` for synchronous tests.
public func withTemporaryDirectoryBlocking(_ body: (TemporaryDirectory) throws -> Void) throws {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    try body(directory)
}

/// Writes an executable script. The file is opened close-on-exec: a process another test forks
/// meanwhile does not inherit it open for writing, which would make running it fail with
/// "Text file busy" (ETXTBSY).
public func writeExecutable(_ text: String, to path: String) throws {
    let descriptor = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o755)
    guard descriptor >= 0 else { throw CocoaError(.fileWriteNoPermission, userInfo: [NSFilePathErrorKey: path]) }
    defer { close(descriptor) }
    let bytes = Array(text.utf8)
    var written = 0
    while written < bytes.count {
        let result = bytes[written...].withUnsafeBytes { write(descriptor, $0.baseAddress, $0.count) }
        guard result > 0 else { throw CocoaError(.fileWriteUnknown, userInfo: [NSFilePathErrorKey: path]) }
        written += result
    }
}
