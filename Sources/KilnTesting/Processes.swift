import Foundation

/// Looks for processes by what their command line contains.
public enum Processes {
    /// Pids of living processes whose command line contains `marker`.
    public static func matching(_ marker: String) -> [Int32] {
        guard let entries = try? FileManager.default.contentsOfDirectory(atPath: "/proc") else { return [] }
        return entries.compactMap { entry -> Int32? in
            guard let pid = Int32(entry), pid != getpid(),
                let data = FileManager.default.contents(atPath: "/proc/\(entry)/cmdline"), !data.isEmpty,
                let stat = try? String(contentsOfFile: "/proc/\(entry)/stat", encoding: .utf8),
                let close = stat.lastIndex(of: ")"),
                !stat[stat.index(after: close)...].hasPrefix(" Z")
            else { return nil }
            let commandLine = String(decoding: data.map { $0 == 0 ? 32 : $0 }, as: UTF8.self)
            return commandLine.contains(marker) ? pid : nil
        }
    }
}

extension Processes {
    /// Runs `executable` to its end on a thread of its own, not on Swift's few cooperative
    /// threads (blocking those stalls every other test's async work meanwhile). Returns its exit
    /// status and what it wrote to standard output and error together.
    public static func run(_ executable: String, _ arguments: [String]) async throws -> (status: Int32, output: String) {
        try await withCheckedThrowingContinuation { continuation in
            Thread {
                do {
                    let process = Process()
                    process.executableURL = URL(fileURLWithPath: executable)
                    process.arguments = arguments
                    let output = Pipe()
                    process.standardOutput = output
                    process.standardError = output
                    try process.run()
                    let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
                    process.waitUntilExit()
                    continuation.resume(returning: (process.terminationStatus, text))
                } catch {
                    continuation.resume(throwing: error)
                }
            }.start()
        }
    }
}

extension Processes {
    /// Has a child started with `actions` close every descriptor above standard error
    /// (glibc's `posix_spawn_file_actions_addclosefrom_np`, looked up at run time: Swift's Glibc
    /// module does not declare it). A server the tests start must not hold another test's pipe
    /// open: that test would wait for the pipe's end for as long as the server lives.
    public static func closeInheritedDescriptors(_ actions: inout posix_spawn_file_actions_t) {
        typealias CloseFrom = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32
        guard let symbol = dlsym(nil, "posix_spawn_file_actions_addclosefrom_np") else {
            fatalError("this glibc lacks posix_spawn_file_actions_addclosefrom_np (2.34 and later have it)")
        }
        _ = unsafeBitCast(symbol, to: CloseFrom.self)(&actions, 3)
    }
}
