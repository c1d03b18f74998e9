import Foundation
import KilnCore
import KilnPipeline

extension Pages {
    /// What the page shows of one job.
    struct JobView {
        var job: JobRecord
        var log: LogExcerpt
        var progress: JobProgress?
        var derivations: [String]
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
            "open": open, "hasDerivations": !view.derivations.isEmpty,
            "derivations": view.derivations.map { ["job": job.id, "name": $0] },
            "log": renderLog(view.log.text, markFirstError: open && job.state != .running),
        ]
        if job.state == .running { values["follow"] = "/api/v1/jobs/\(job.id)/log?follow=1&offset=\(view.log.end)" }
        if let cache = job.cacheSummary { values["cache"] = cache }
        if view.log.skipped > 0 { values["skipped"] = view.log.skipped }
        return values
    }

    /// The log as HTML with its colours; with `markFirstError`, the first line that reports an
    /// error is marked `#first-error` (the page opens there).
    static func renderLog(_ text: String, markFirstError: Bool) -> String {
        guard markFirstError, let line = firstErrorLine(text) else { return ANSIHTML.render(text) }
        let before = String(text[..<line.lowerBound])
        let rest = text[line.lowerBound...]
        let end = rest.firstIndex(of: "\n").map { rest.index(after: $0) } ?? rest.endIndex
        return ANSIHTML.render(before) + "<span id=\"first-error\">" + ANSIHTML.render(String(rest[..<end])) + "</span>"
            + ANSIHTML.render(String(rest[end...]))
    }

    /// The range of the first line that reports an error (nix's `error:`, a builder's
    /// `error`/`failed`), if any.
    static func firstErrorLine(_ text: String) -> Range<String.Index>? {
        var start = text.startIndex
        while start < text.endIndex {
            let end = text[start...].firstIndex(of: "\n") ?? text.endIndex
            let line = text[start..<end].lowercased()
            if line.contains("error") || line.contains("failed") { return start..<end }
            start = end < text.endIndex ? text.index(after: end) : end
        }
        return nil
    }
}
