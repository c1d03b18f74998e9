import Foundation
import KilnTesting
import Testing

@testable import KilnNix

@Suite struct NixLogRendererTests {
    static func start(_ id: Int, _ name: String) -> ArraySlice<UInt8> {
        ArraySlice(#"@nix {"action":"start","id":\#(id),"type":105,"fields":["/nix/store/\#(String(repeating: "a", count: 32))-\#(name).drv"]}"#.utf8)
    }

    /// A job that builds thousands of derivations cannot fill the disk with log files.
    @Test func aFailedBuildersDerivationIsRecognised() {
        #expect(NixLogRenderer.failedDerivation("\u{1B}[31;1merror:\u{1B}[0m builder for '\u{1B}[35;1m/nix/store/abc-bad.drv\u{1B}[0m' failed with exit code 1")
            == "/nix/store/abc-bad.drv")
        #expect(NixLogRenderer.failedDerivation("builder for '/nix/store/abc-bad.drv' failed with exit code 1;") == "/nix/store/abc-bad.drv")
        #expect(NixLogRenderer.failedDerivation("building '/nix/store/abc-ok.drv'...") == nil)
    }

    @Test func perDerivationLogsAreCapped() async throws {
        try await withTemporaryDirectory("kiln-render") { directory in
            let log = MemoryLog()
            let renderer = NixLogRenderer(sink: log, derivationLogs: directory.path, capPerDerivation: 1024, maxDerivationLogs: 2)
            for index in 0..<5 { renderer.line(Self.start(index, "d\(index)")) }
            renderer.finish()
            let files = try FileManager.default.contentsOfDirectory(atPath: directory.path)
            #expect(files.count == 2)
            #expect(log.text.components(separatedBy: "more than 2 derivations").count == 2)
            #expect(log.text.contains("building '/nix/store/\(String(repeating: "a", count: 32))-d4.drv'"))
        }
    }
}

/// The reason a job's status gives: nix's last error, also from its internal-json messages.
@Suite struct NixMessagesTests {
    @Test func theLastErrorIsReadFromPlainAndJSONMessages() {
        let plain = "building...\nerror: builder for '/nix/store/0123456789abcdfghijklmnpqrsvwxyz-hello.drv' failed with exit code 1\n"
        #expect(NixMessages.lastError(Array(plain.utf8)) == "builder for 'hello.drv' failed with exit code 1")
        let json = #"@nix {"action":"msg","level":0,"msg":"\u001b[31;1merror:\u001b[0m builder for '\u001b[35;1m/nix/store/0123456789abcdfghijklmnpqrsvwxyz-adhoc.drv\u001b[0m' failed with exit code 1"}"#
            + "\n"
        #expect(NixMessages.lastError(Array(json.utf8)) == "builder for 'adhoc.drv' failed with exit code 1")
        #expect(NixMessages.lastError(Array("@nix {not json\n".utf8)) == "@nix {not json")
    }
}
