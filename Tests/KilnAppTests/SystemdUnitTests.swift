import Foundation
import KilnTesting
import Testing

/// `config/kiln.service` as systemd reads it: no unknown keys, no bad values.
@Suite struct SystemdUnitTests {
    @Test func theUnitVerifies() async throws {
        let analyze = "/usr/bin/systemd-analyze"
        guard FileManager.default.isExecutableFile(atPath: analyze) else { return }  // no systemd here: nothing to check with
        try await withTemporaryDirectory("kiln-unit") { directory in
            let unit = try String(contentsOfFile: FileManager.default.currentDirectoryPath + "/config/kiln.service", encoding: .utf8)
            #expect(unit.contains("KillMode=mixed") && unit.contains("TimeoutStopSec=90") && unit.contains("LoadCredential="))
            // verify wants ExecStart's binary to exist; everything else is checked as shipped.
            try unit.replacingOccurrences(of: "/usr/local/bin/kiln", with: "/bin/true")
                .write(toFile: directory.appending("kiln.service"), atomically: true, encoding: .utf8)
            let verified = try await Processes.run(analyze, ["verify", directory.appending("kiln.service")])
            #expect(verified.status == 0 && verified.output.isEmpty, "\(verified.output)")
        }
    }
}
