import Foundation
import KilnTesting
import Testing

@testable import KilnApp

/// The events socket's path before binding: stale sockets go, live ones and other files stay.
@Suite struct EventsSocketFileTests {
    /// A socket bound at `path`, listening when `listening`; returns its descriptor.
    func bind(_ path: String, listening: Bool) throws -> Int32 {
        let descriptor = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: Array(path.utf8) + [0]) }
        let bound = withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.bind(descriptor, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        try #require(bound == 0)
        if listening { try #require(listen(descriptor, 1) == 0) }
        return descriptor
    }

    @Test func aStaleSocketIsReplacedAndALiveOneIsNot() throws {
        try withTemporaryDirectoryBlocking { directory in
            let stale = directory.appending("stale.sock")
            close(try bind(stale, listening: false))
            try EventsSocketFile.prepare(stale)
            #expect(!FileManager.default.fileExists(atPath: stale), "a socket nobody serves is removed")

            let live = directory.appending("live.sock")
            let server = try bind(live, listening: true)
            defer { close(server) }
            #expect(throws: (any Error).self) { try EventsSocketFile.prepare(live) }
            #expect(FileManager.default.fileExists(atPath: live), "a socket another process serves stays")

            let file = directory.appending("file")
            try "x".write(toFile: file, atomically: true, encoding: .utf8)
            #expect(throws: (any Error).self) { try EventsSocketFile.prepare(file) }
            #expect(FileManager.default.fileExists(atPath: file))
        }
    }
}
