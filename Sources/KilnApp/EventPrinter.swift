import Foundation
import Synchronization
import KilnCore

/// Shows a build's events on the terminal as `kiln run` reaches them: each job's end with its
/// mark, and the build's end. The same events the API streams and the pages follow.
final class EventPrinter: Sendable {
    private let log: any EventLog
    private let build: BuildID
    private let output: Terminal
    private let seen = Mutex<Int64>(0)

    init(log: any EventLog, build: BuildID, output: Terminal) {
        self.log = log
        self.build = build
        self.output = output
    }

    /// Prints the events appended since the last call.
    func show() async throws {
        let after = seen.withLock { $0 }
        let events = try await log.events(
            after: after, filter: EventQuery(build: build, types: ["job.finished", "build.finished"]), limit: 10_000)
        guard let last = events.last else { return }
        seen.withLock { $0 = last.id }
        for stored in events {
            guard let fields = try? JSONSerialization.jsonObject(with: Data(stored.event.data.utf8)) as? [String: Any] else { continue }
            let summary = fields["summary"] as? String ?? ""
            switch stored.event.type {
            case "job.finished":
                let state = (fields["outcome"] as? String).flatMap(JobState.init(rawValue:)) ?? .errored
                output.result(fields["name"] as? String ?? "?", BuildStateMachine.statusState(state), summary)
            case "build.finished":
                output.note("\(fields["state"] as? String ?? "ended"): \(summary)")
            default:
                break
            }
        }
    }
}
