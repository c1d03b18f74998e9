import Foundation
import KilnTesting
import Testing

@testable import KilnNix

/// What a killed Kiln left running is ended at the next start, and nothing else is.
@Suite struct ProcessMarkTests {
    func spawn(_ marker: String, environment: [String: String]) throws -> Process {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/busybox")
        process.arguments = ["sh", "-c", "/bin/busybox sleep 300; echo \(marker)"]
        process.environment = environment
        // Not the test's own output: a child left running would hold the runner's pipe open.
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        return process
    }

    @Test(.timeLimit(.minutes(1))) func markedLeftoversAreKilledWithTheirChildrenAndOthersAreNot() async throws {
        let marker = "leftover-\(UInt64.random(in: 1_000_000_000...9_999_999_999))"
        let mark = ProcessMark(value: "/tmp/kiln-test-\(marker)/processes")
        let left = try spawn(marker, environment: [mark.variable: mark.value])
        let other = try spawn(marker, environment: [mark.variable: mark.value + "-another-kiln"])
        defer { ProcessTree.killAll(other.processIdentifier) }
        try await eventually("the children to start", within: .seconds(10)) {
            ProcessTree.members(of: left.processIdentifier).count == 2 && ProcessTree.members(of: other.processIdentifier).count == 2
        }
        let child = try #require(ProcessTree.members(of: left.processIdentifier).last)
        #expect(mark.endLeftovers() >= 1)
        left.waitUntilExit()
        try await eventually("the child to die", within: .seconds(10)) { !ProcessTree.isAlive(child) }
        // Another Kiln's processes (another data directory) are left alone.
        #expect(other.isRunning)
    }
}
