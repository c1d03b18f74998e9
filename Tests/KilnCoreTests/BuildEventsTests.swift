import Foundation
import KilnCore
import Testing
import KilnPipeline

/// The events a change makes, as a table: the build and its jobs before and after → event types.
@Suite struct BuildEventsTests {
    static let now = Date(timeIntervalSince1970: 1_000_000)

    static func job(_ id: JobID, _ state: JobState) -> JobRecord {
        JobRecord(
            id: id, buildID: 1, name: "j\(id)", target: .installables([".#j\(id)"]), needs: [], timeout: .seconds(60),
            maxSilent: .seconds(60), state: state, summary: state.rawValue, queuedAt: now, startedAt: now, finishedAt: state.isFinal ? now : nil)
    }

    static func details(_ state: BuildState, _ jobs: [JobRecord] = []) -> BuildDetails {
        BuildDetails(
            build: BuildRecord(
                id: 1, repositoryID: 1, forge: "github", repository: "o/r", sha: String(repeating: "a", count: 40),
                ref: "refs/heads/main", state: state, summary: state.rawValue, createdAt: now, startedAt: now,
                finishedAt: state.isFinal ? now : nil),
            jobs: jobs, statuses: [])
    }

    static let cases: [(String, BuildDetails?, BuildDetails, [String])] = [
        ("a re-run is new", nil, details(.queued), ["build.queued"]),
        ("planning starts: nothing to tell", details(.queued), details(.planning), []),
        ("planned with jobs", details(.planning), details(.running, [job(1, .queued), job(2, .queued)]),
         ["build.planned", "build.started", "job.queued", "job.queued"]),
        ("planned into an end (skipped, invalid, reused)", details(.planning), details(.skipped), ["build.planned", "build.finished"]),
        ("waiting for approval", details(.planning), details(.awaitingApproval), ["build.planned"]),
        ("approved: queued again", details(.awaitingApproval), details(.queued), ["build.queued"]),
        ("a job ends, others run on", details(.running, [job(1, .running), job(2, .running)]),
         details(.running, [job(1, .succeeded), job(2, .running)]), ["job.finished"]),
        ("the last job ends the build, its end after the job's",
         details(.running, [job(1, .succeeded), job(2, .running)]), details(.failed, [job(1, .succeeded), job(2, .failed)]),
         ["job.finished", "build.finished"]),
        ("a cancel ends queued jobs and the build", details(.running, [job(1, .queued), job(2, .queued)]),
         details(.cancelled, [job(1, .cancelled), job(2, .cancelled)]), ["job.finished", "job.finished", "build.finished"]),
        ("nothing changed", details(.running, [job(1, .running)]), details(.running, [job(1, .running)]), []),
        ("a restart queues an interrupted job again", details(.running, [job(1, .running)]), details(.running, [job(1, .queued)]),
         ["job.queued"]),
        ("a restart queues a build that was planning again", details(.planning), details(.queued), ["build.queued"]),
    ]

    @Test(arguments: cases)
    func eventsOfAChange(name: String, before: BuildDetails?, after: BuildDetails, expected: [String]) {
        #expect(BuildEvents.between(before, after).map(\.type) == expected, "\(name)")
    }

    @Test func eventsCarryTheirBuildJobAndRepository() throws {
        let events = BuildEvents.between(Self.details(.running, [Self.job(1, .running)]), Self.details(.succeeded, [Self.job(1, .succeeded)]))
        let finished = try #require(events.first)
        #expect(finished.type == "job.finished" && finished.buildID == 1 && finished.jobID == 1 && finished.repository == "o/r")
        let object = try #require(try JSONSerialization.jsonObject(with: Data(finished.data.utf8)) as? [String: Any])
        #expect(object["outcome"] as? String == "succeeded" && object["build_id"] as? Int == 1 && object["job_id"] as? Int == 1)
    }

    @Test func aDeliverysQueuedEventIsValidJSONWhateverItsRef() throws {
        let delivery = NewDelivery(
            forge: "github", deliveryID: "d", repositoryID: 1, repository: "o/r", ref: .branch("we\"ird\\\u{1}name"),
            sha: String(repeating: "a", count: 40),
            pullRequest: PullRequestInfo(number: 7, headBranch: "h", baseBranch: "main", isFork: false, headRepository: nil))
        let event = BuildEvents.queued(5, delivery)
        let object = try #require(try JSONSerialization.jsonObject(with: Data(event.data.utf8)) as? [String: Any])
        #expect(object["ref"] as? String == "refs/heads/we\"ird\\\u{1}name")
        #expect(object["build_id"] as? Int == 5 && object["pull_request"] as? Int == 7 && object["repository"] as? String == "o/r")
        #expect(Array(object.keys).sorted() == ["build_id", "forge", "pull_request", "ref", "repository", "sha"])
    }

    @Test func postBuildEventsAreDeterminateNixdsShape() throws {
        var report = JobReport(outcome: .succeeded, duration: .zero)
        report.built = ["/nix/store/a-x.drv"]
        report.builtOutputs = ["/nix/store/a-x.drv": ["/nix/store/b-x"]]
        report.failedDerivations = ["/nix/store/c-y.drv"]
        let events = BuildEvents.postBuild(report, job: 3, build: 2, repository: "o/r")
        #expect(events.map(\.type) == ["built-path", "build-failure"])
        let built = try #require(try JSONSerialization.jsonObject(with: Data(events[0].data.utf8)) as? [String: Any])
        #expect(built["v"] as? String == "1" && built["c"] as? String == "BuiltPathResponseEventV1")
        #expect(built["drv"] as? String == "/nix/store/a-x.drv" && built["outputs"] as? [String] == ["/nix/store/b-x"])
        let failed = try #require(try JSONSerialization.jsonObject(with: Data(events[1].data.utf8)) as? [String: Any])
        #expect(failed["c"] as? String == "BuildFailureResponseEventV1" && failed["drv"] as? String == "/nix/store/c-y.drv")
    }
}
