import Foundation
import KilnTesting
import Testing

/// `config/kiln.service` as systemd reads it: no unknown keys, no bad values.
@Suite struct SystemdUnitTests {
    @Test func theUnitVerifies() throws {
        let analyze = "/usr/bin/systemd-analyze"
        guard FileManager.default.isExecutableFile(atPath: analyze) else { return }  // no systemd here: nothing to check with
        try withTemporaryDirectoryBlocking { directory in
            let unit = try String(contentsOfFile: FileManager.default.currentDirectoryPath + "/config/kiln.service", encoding: .utf8)
            #expect(unit.contains("KillMode=mixed") && unit.contains("TimeoutStopSec=90") && unit.contains("LoadCredential="))
            // verify wants ExecStart's binary to exist; everything else is checked as shipped.
            try unit.replacingOccurrences(of: "/usr/local/bin/kiln", with: "/bin/true")
                .write(toFile: directory.appending("kiln.service"), atomically: true, encoding: .utf8)
            let process = Process()
            process.executableURL = URL(fileURLWithPath: analyze)
            process.arguments = ["verify", directory.appending("kiln.service")]
            let output = Pipe()
            process.standardOutput = output
            process.standardError = output
            try process.run()
            let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            process.waitUntilExit()
            #expect(process.terminationStatus == 0 && text.isEmpty, "\(text)")
        }
    }
}
