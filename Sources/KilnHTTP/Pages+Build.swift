import Foundation
import KilnCore
import KilnPipeline

extension Pages {
    /// What the page shows of one job.
    struct JobView {
        var job: JobRecord
        /// The job's own log.
        var jobLog: LogLines
        var progress: JobProgress?
        /// Every derivation log the job has, by name.
        var derivationNames: [String] = []
        /// The first of them (at most `maxDerivationCards`), read.
        var derivationLogs: [DerivationLog] = []
    }

    /// A build's page; `eventsFrom` as for `index`. The first job that did not succeed has its
    /// log open at its first error line; succeeded jobs' logs are folded.
    static func build(_ details: BuildDetails, jobs: [JobView], session: Session? = nil, eventsFrom: Int64 = 0, now: Date = Date())
        -> Page
    {
        let build = details.build
        var values = row(build, now: now)
        values["fullSHA"] = build.sha
        values["summary"] = build.summary
        values["hasDiagnostics"] = !build.diagnostics.isEmpty
        values["diagnostics"] = build.diagnostics
        if let session, session.scope >= .control {
            values["controls"] = true
            values["csrf"] = session.csrf
            values["canCancel"] = !build.state.isFinal
            values["canApprove"] = build.state == .awaitingApproval
            values["canRerunFailed"] = [.failed, .errored, .cancelled].contains(build.state) && details.jobs.contains { $0.state == .succeeded }
        }
        let firstFailing = jobs.first { $0.job.state.isFinal && $0.job.state != .succeeded && $0.job.state != .skipped }?.job.id
        values["hasJobs"] = !jobs.isEmpty
        values["jobs"] = jobs.map { view in job(view, open: view.job.id == firstFailing || view.job.state == .running) }
        values["hasStatuses"] = !details.statuses.isEmpty
        values["statuses"] = details.statuses.map { entry in
            [
                "context": entry.status.context, "state": entry.status.state.rawValue, "description": entry.status.description,
                "delivery": entry.delivery.rawValue,
                "deliveryText": entry.delivery.rawValue + (entry.lastError.map { " (\($0))" } ?? ""),
            ]
        }
        let active = !build.state.isFinal
        return render(
            "build", title: "Build #\(build.id) · \(build.repository)", values, session: session,
            live: active
                ? "build=\(build.id)&last-event-id=\(eventsFrom)&types=build.started,build.finished,job.started,job.finished"
                : nil,
            refresh: active)
    }

    private static func job(_ view: JobView, open: Bool) -> [String: Any] {
        let job = view.job
        let took = job.startedAt.map { HumanDuration.format(.seconds((job.finishedAt ?? Date()).timeIntervalSince($0))) } ?? ""
        var values: [String: Any] = [
            "id": job.id, "name": job.name, "needs": job.needs.joined(separator: ", "), "state": job.state.rawValue,
            "stateText": job.state.rawValue.replacingOccurrences(of: "_", with: " "), "icon": icon(job.state),
            "summary": view.progress.map { "\(job.summary) — \($0.summary)" } ?? job.summary, "took": took,
            "cpu": job.cpuSeconds.map { String(format: "%.2f s", $0) } ?? "",
            "memory": job.peakMemoryKilobytes.map { ByteCount.format($0 * 1024) } ?? "",
            "outputs": job.outputs.map { output in
                ["path": output.path, "size": output.narSize.map { ByteCount.format(Int($0)) } ?? ""]
            },
            "logs": logsHTML(view, markFirstError: open && job.state != .running),
        ]
        if let cache = job.cacheSummary { values["cache"] = cache }
        if !job.machines.isEmpty { values["machines"] = job.machines.joined(separator: ", ") }
        if let image = job.imagePush { values["image"] = image.summary }
        return values
    }
}
