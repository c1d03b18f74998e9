import Foundation
import HTTPTypes
import Hummingbird
import KilnCore
import KilnPipeline
import Testing

@testable import KilnHTTP

/// The pages as rendered from their templates: live only while something runs, every hostile
/// value escaped, the first error marked.
@Suite struct PageTests {
    static let now = Date(timeIntervalSince1970: 1_800_000_000)

    static func build(_ state: BuildState, ref: String = "refs/heads/main", title: String? = nil) -> BuildRecord {
        BuildRecord(
            id: 7, repositoryID: 1, forge: "github", repository: "o/r", sha: String(repeating: "a", count: 40), ref: ref,
            state: state, summary: state.rawValue, createdAt: now.addingTimeInterval(-125), startedAt: now.addingTimeInterval(-65),
            title: title)
    }

    static func details(_ state: BuildState, ref: String = "refs/heads/main", title: String? = nil) -> BuildDetails {
        BuildDetails(build: build(state, ref: ref, title: title), jobs: [], statuses: [])
    }

    static func lines(_ text: String) -> LogLines {
        LogLines(head: text.split(separator: "\n", omittingEmptySubsequences: false).enumerated().map {
            LogLines.Line(number: $0.offset + 1, text: String($0.element))
        })
    }

    @Test func aRunningBuildsPageFollowsItsEventsAndAFinishedOneDoesNot() {
        let running = Pages.build(Self.details(.running), jobs: [], eventsFrom: 41, now: Self.now)
        #expect(running.html.contains("new EventSource(\"/api/v1/events?build=7&last-event-id=41&types=build.started,"))
        #expect(running.html.contains("s.addEventListener(\"job.finished\",r)") && !running.html.contains("\"job.progress\""),
            "a job's progress does not reload the page: its log grows in place")
        #expect(running.html.contains("<script nonce=\"\(running.nonce)\">"))
        #expect(running.html.contains("<noscript><meta http-equiv=\"refresh\" content=\"3\"></noscript>"))
        #expect(running.html.contains("running for 1m 05s"), "\(running.html)")
        let finished = Pages.build(Self.details(.succeeded), jobs: [], now: Self.now)
        #expect(!finished.html.contains("EventSource") && !finished.html.contains("http-equiv"))
        let index = Pages.index([], query: BuildListQuery(), older: nil, session: nil, eventsFrom: 9)
        #expect(index.html.contains("new EventSource(\"/api/v1/events?last-event-id=9&types=build.queued,build.planned,build.started,build.finished\")"))
        #expect(!index.html.contains("http-equiv"), "nothing runs: nothing to refresh without JavaScript")
        // The script runs only with this page's nonce.
        let response = Pages.html(.ok, running)
        #expect(response.headers[.contentSecurityPolicy]?.contains("script-src 'nonce-\(running.nonce)'") == true)
    }

    /// Branch names, commit titles and log text come from whoever pushes: none of them is markup.
    @Test(arguments: [
        "<script>alert(1)</script>", "\"><img src=x onerror=alert(1)>", "' onmouseover='alert(1)", "e\u{301}\u{301}\u{301} <b>",
    ])
    func hostileTextIsEscapedEverywhere(text: String) {
        let build = Self.build(.failed, ref: "refs/heads/" + text, title: text)
        let index = Pages.index([build], query: BuildListQuery(branch: text), older: nil, session: nil, now: Self.now)
        let job = JobRecord(
            id: 3, buildID: 7, name: text, target: .installables([".#x"]), needs: [text], timeout: .seconds(60), maxSilent: .seconds(60),
            state: .failed, summary: text, queuedAt: Self.now)
        let page = Pages.build(
            BuildDetails(build: build, jobs: [job], statuses: []),
            jobs: [Pages.JobView(job: job, jobLog: Self.lines(text + "\n\u{1B}[31merror: \(text)\u{1B}["), progress: nil)],
            now: Self.now)
        for html in [index.html, page.html] {
            #expect(!html.contains("<script>alert") && !html.contains("<img src=x") && !html.contains("' onmouseover") && !html.contains("<b>"))
            #expect(!html.contains("\"><img"))
        }
        #expect(page.html.contains("data-first-error"), "the failing job's log opens at its first error")
    }

    @Test func listsShowTriggerTimingAndTheirNextPage() {
        var rerun = Self.build(.succeeded)
        rerun.rerunOf = 3
        rerun.finishedAt = Self.now
        var pull = Self.build(.queued)
        pull.id = 8
        pull.pullRequest = PullRequestInfo(number: 12, headBranch: "feature", baseBranch: "main", isFork: true)
        let page = Pages.index([pull, rerun], query: BuildListQuery(limit: 2), older: "/?before=7", session: nil, now: Self.now)
        #expect(page.html.contains("re-run of #3") && page.html.contains("pull request #12 from a fork"))
        #expect(page.html.contains("took 1m 05s"), "\(page.html)")
        #expect(page.html.contains("queued for 2m 05s"), "\(page.html)")
        #expect(page.html.contains("href=\"/?before=7\" rel=\"next\""))
        #expect(page.html.contains("<time datetime=\""))
    }

    @Test func badgesSayTheOutcomeInEscapedSVG() {
        let svg = BadgeController.svg(label: "<job>", value: "passing")
        #expect(svg.hasPrefix("<svg") && svg.contains("&lt;job&gt;") && svg.contains("passing") && !svg.contains("<job>"))
    }
}
