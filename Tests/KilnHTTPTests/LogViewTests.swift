import Foundation
import KilnCore
import KilnPipeline
import KilnTesting
import Testing

@testable import KilnHTTP

/// The log viewer: numbered lines with head, tail and a gap; colours carried across lines; cards
/// per derivation grouped failed, building, succeeded.
@Suite struct LogViewTests {
    @Test func aLongLogShowsItsHeadAndTailAndWhereItsMiddleIs() throws {
        try withTemporaryDirectoryBlocking { directory in
            let path = directory.appending("long.log")
            let text = (1...6000).map { "line \($0)" }.joined(separator: "\n") + "\n"
            try text.write(toFile: path, atomically: true, encoding: .utf8)
            let lines = LogLines.read(path)
            #expect(lines.head.count == 2000 && lines.head.first == .init(number: 1, text: "line 1") && lines.head.last?.number == 2000)
            #expect(lines.tail.count == 3000 && lines.tail.first == .init(number: 3001, text: "line 3001"))
            #expect(lines.tail.last == .init(number: 6000, text: "line 6000"))
            let gap = try #require(lines.gap)
            #expect(gap.firstLine == 2001 && gap.lastLine == 3000 && lines.size == text.utf8.count)
            // The gap's bytes are exactly its lines.
            let bytes = Array(text.utf8)[gap.bytes]
            let middle = String(decoding: bytes, as: UTF8.self)
            #expect(middle.hasPrefix("line 2001\n") && middle.hasSuffix("line 3000\n"))

            // A build can print megabytes without a newline, or huge lines: a page shows a bounded part.
            let wide = String(repeating: "x", count: 10_000)
            try ((0..<400).map { _ in wide }.joined(separator: "\n")).write(toFile: path, atomically: true, encoding: .utf8)
            let capped = LogLines.read(path)
            #expect(capped.head.count < 400 && capped.head.count * 10_001 <= LogLines.maxPartBytes + 10_001)
            #expect(capped.head[0].text.count < 4200 && capped.head[0].text.hasSuffix("(the raw log has the rest of this line)"))
            #expect(capped.gap != nil && capped.head.count + capped.tail.count < 400)

            try "one\ntwo".write(toFile: path, atomically: true, encoding: .utf8)
            #expect(LogLines.read(path).head == [.init(number: 1, text: "one"), .init(number: 2, text: "two")])
            #expect(LogLines.read(directory.appending("missing")).head.isEmpty)
        }
    }

    @Test func coloursCarryAcrossLinesAndCutSequencesAreHeldBack() {
        var renderer = ANSIHTML()
        #expect(renderer.render("\u{1B}[31mred") == "<span class=\"a1\">red</span>")
        #expect(renderer.render("still\u{1B}[1m bold\u{1B}[0m plain") == "<span class=\"a1\">still</span><span class=\"a1 ab\"> bold</span> plain")
        #expect(renderer.render("<b>") == "&lt;b&gt;")
        #expect(ANSIHTML.render("cut \u{1B}[3") == "cut ")
    }

    @Test func derivationCardsAreGroupedWithPermalinksPhasesAndTheFirstErrorMarked() {
        let now = Date()
        var job = JobRecord(
            id: 3, buildID: 1, name: "app", target: .installables([".#app"]), needs: [], timeout: .seconds(60), maxSilent: .seconds(60),
            state: .failed, summary: "failed", queuedAt: now)
        job.built = ["/nix/store/aaa-dep.drv"]
        let long = LogLines(
            head: [.init(number: 1, text: "Running phase: buildPhase"), .init(number: 2, text: "cc: error: nope")],
            gap: .init(firstLine: 3, lastLine: 9, bytes: 40..<90), tail: [.init(number: 10, text: "the end")])
        let view = Pages.JobView(
            job: job, jobLog: LogLines(head: [.init(number: 1, text: "building")]), progress: nil,
            derivationNames: ["aaa-dep.drv", "bbb-app.drv"],
            derivationLogs: [
                // A succeeded card is not read for the page: it links to its log.
                .init(name: "aaa-dep.drv", lines: nil),
                .init(name: "bbb-app.drv", lines: long),
            ])
        let html = Pages.logsHTML(view, markFirstError: true)
        let failed = try? #require(html.range(of: "id=\"j3-d2\""))
        let succeeded = try? #require(html.range(of: "id=\"j3-d1\""))
        #expect(failed != nil && succeeded != nil && failed!.lowerBound < succeeded!.lowerBound, "failed cards come first")
        #expect(html.contains("<details class=\"drv failed\" id=\"j3-d2\" open>") && html.contains("<details class=\"drv succeeded\" id=\"j3-d1\">"))
        #expect(html.contains("<span class=\"phase\">buildPhase</span>"))
        #expect(html.contains("<a href=\"/api/v1/jobs/3/log?derivation=aaa-dep.drv\">Open this derivation's log</a>"))
        #expect(html.contains("<span class=\"l first-error\" id=\"j3-d2-L2\" data-first-error><a class=\"n\" href=\"#j3-d2-L2\">2</a>cc: error: nope"))
        #expect(html.contains("data-range=\"bytes=40-89\"") && html.contains("Show lines 3–9"))
        #expect(html.contains("Failed (1):</span> <a href=\"#j3-d2\">app.drv</a>"))
        #expect(html.components(separatedBy: "data-first-error").count == 2, "one first error per job")
    }
}
