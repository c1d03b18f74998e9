import Foundation
import Testing

@testable import KilnHTTP
import KilnCore

@Suite struct AcceptedJSONTests {
    /// The hand-written answer is the same JSON as JSONEncoder's, whatever the strings hold.
    @Test(arguments: ["http://kiln.test/builds/1", "a \"quoted\" \\ back\nslash\t\u{1}, é and 🔥"])
    func compactJSONMatchesTheEncoder(text: String) throws {
        let accepted = AcceptedJSON(
            build_id: 7, new: true, url: text,
            builds: [.init(build_id: 7, new: true, url: text), .init(build_id: 8, new: false, url: "u")], message: text)
        let handWritten = try JSONSerialization.jsonObject(with: Data(accepted.compactJSON)) as? NSDictionary
        let encoded = try JSONSerialization.jsonObject(with: JSONEncoder().encode(accepted)) as? NSDictionary
        #expect(handWritten != nil && handWritten == encoded)
    }
}

@Suite struct LivePageTests {
    static func details(_ state: BuildState) -> BuildDetails {
        let now = Date()
        return BuildDetails(
            build: BuildRecord(
                id: 7, repositoryID: 1, forge: "github", repository: "o/r", sha: String(repeating: "a", count: 40),
                ref: "refs/heads/main", state: state, summary: state.rawValue, createdAt: now),
            jobs: [], statuses: [])
    }

    @Test func aRunningBuildsPageFollowsItsEventsAndAFinishedOneDoesNot() {
        let running = Pages.build(Self.details(.running), jobs: [], eventsFrom: 41)
        #expect(running.contains("new EventSource(\"/api/v1/events?build=7&last-event-id=41\")"))
        #expect(running.contains("<noscript><meta http-equiv=\"refresh\" content=\"3\"></noscript>"))
        #expect(!running.replacingOccurrences(of: "<noscript><meta http-equiv=\"refresh\" content=\"3\"></noscript>", with: "")
            .contains("http-equiv"))
        let finished = Pages.build(Self.details(.succeeded), jobs: [])
        #expect(!finished.contains("EventSource") && !finished.contains("http-equiv"))
        let index = Pages.index([], eventsFrom: 9)
        #expect(index.contains("new EventSource(\"/api/v1/events?types=build.queued,build.planned,build.started,build.finished&last-event-id=9\")"))
        #expect(!index.contains("http-equiv"), "nothing runs: nothing to refresh without JavaScript")
    }
}
