import Foundation
import KilnTesting
import Testing

@testable import KilnNix

/// What a killed Kiln left running is ended at the next start, and nothing else is.
@Suite struct ProcessRecordsTests {
    func spawn(_ marker: String) throws -> Process {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/busybox")
        process.arguments = ["sh", "-c", "/bin/busybox sleep 300; echo \(marker)"]
        try process.run()
        return process
    }

    @Test(.timeLimit(.minutes(1))) func leftoversAreKilledWithTheirChildren() async throws {
        try await withTemporaryDirectory("kiln-records") { directory in
            let marker = "leftover-\(UInt64.random(in: 1_000_000_000...9_999_999_999))"
            let process = try spawn(marker)
            let records = ProcessRecords(directory: directory.path)
            let record = records.open(process.processIdentifier)
            try await eventually("the child to start", within: .seconds(10)) { ProcessTree.members(of: process.processIdentifier).count == 2 }
            record.update(ProcessTree.members(of: process.processIdentifier))
            let child = try #require(ProcessTree.members(of: process.processIdentifier).last)
            // A record whose start time does not match is a reused pid: it is left alone.
            try "\(getpid()) 1\n".write(toFile: directory.appending("stale.pids"), atomically: true, encoding: .utf8)
            #expect(records.endLeftovers() == 2)
            process.waitUntilExit()
            try await eventually("the child to die", within: .seconds(10)) { !ProcessTree.isAlive(child) }
            #expect(try FileManager.default.contentsOfDirectory(atPath: directory.path).isEmpty)
        }
    }
}
