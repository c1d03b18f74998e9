import Foundation
import KilnPipeline

/// The events a change to a build makes, found by comparing the build before and after it:
/// one place derives them all, whatever made the change.
public enum BuildEvents {
    /// A delivery's new build. Written for every delivery, so its JSON is written by hand, with
    /// sorted keys like every other event's.
    public static func queued(_ build: BuildID, _ delivery: NewDelivery) -> KilnEvent {
        let pullRequest = delivery.pullRequest.map { ",\"pull_request\":\($0.number)" } ?? ""
        let data =
            "{\"build_id\":\(build),\"forge\":\(JSONText.quoted(delivery.forge))\(pullRequest),\"ref\":\(JSONText.quoted(delivery.ref.fullName)),"
            + "\"repository\":\(JSONText.quoted(delivery.repository)),\"sha\":\(JSONText.quoted(delivery.sha))}"
        return KilnEvent(type: "build.queued", buildID: build, jobID: nil, repository: delivery.repository, data: data)
    }

    /// What changed from `before` (nil: the build is new to the caller) to `after`.
    public static func between(_ before: BuildDetails?, _ after: BuildDetails) -> [KilnEvent] {
        let build = after.build
        var events: [KilnEvent] = []
        func event(_ type: String, _ fields: [String: Any] = [:], job: JobID? = nil) {
            events.append(KilnEvent(type: type, buildID: build.id, jobID: job, repository: build.repository, fields: fields))
        }
        let was = before?.build.state
        var ending: KilnEvent?
        if was != build.state {
            switch build.state {
            case .queued:
                event("build.queued", ["sha": build.sha, "ref": build.ref, "forge": build.forge])
            case .planning:
                // Claimed for planning before the change could be read: it was queued.
                if was == nil || was == .awaitingApproval {
                    event("build.queued", ["sha": build.sha, "ref": build.ref, "forge": build.forge])
                }
            case .running:
                event("build.planned", ["summary": build.summary, "jobs": after.jobs.count])
                event("build.started", ["sha": build.builtSHA ?? build.sha])
            case .awaitingApproval:
                event("build.planned", ["summary": build.summary, "jobs": 0])
            case .succeeded, .failed, .errored, .cancelled, .skipped:
                if was == nil || was == .planning || was == .queued {
                    event("build.planned", ["summary": build.summary, "jobs": after.jobs.count])
                }
                var fields: [String: Any] = ["state": build.state.rawValue, "summary": build.summary]
                if let started = build.startedAt, let finished = build.finishedAt {
                    fields["duration_seconds"] = finished.timeIntervalSince(started)
                }
                // After its jobs' events: a build ends when its last job does.
                ending = KilnEvent(type: "build.finished", buildID: build.id, repository: build.repository, fields: fields)
            }
        }
        let earlier = Dictionary((before?.jobs ?? []).map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
        for job in after.jobs {
            let old = earlier[job.id]
            if old == nil || (old?.state == .running && job.state == .queued) {
                // New, or queued again after a restart interrupted it.
                event("job.queued", ["name": job.name], job: job.id)
            }
            if job.state == .running, old?.state != .running {
                event("job.started", ["name": job.name, "attempt": job.attempt], job: job.id)
            }
            if job.state.isFinal, old?.state.isFinal != true {
                event("job.finished", finished(job), job: job.id)
            }
        }
        if let ending { events.append(ending) }
        return events
    }

    /// A finished job's fields: outcome, time, accounting, outputs.
    static func finished(_ job: JobRecord) -> [String: Any] {
        var fields: [String: Any] = [
            "name": job.name, "outcome": job.state.rawValue, "summary": job.summary,
            "outputs": job.outputs.map { output -> [String: Any] in
                var object: [String: Any] = ["name": output.name, "path": output.path]
                if let size = output.narSize { object["nar_size_bytes"] = size }
                return object
            },
        ]
        if let started = job.startedAt, let finished = job.finishedAt { fields["duration_seconds"] = finished.timeIntervalSince(started) }
        if let cpu = job.cpuSeconds { fields["cpu_seconds"] = cpu }
        if let memory = job.peakMemoryKilobytes { fields["peak_memory_kilobytes"] = memory }
        if let code = job.exitCode { fields["exit_code"] = code }
        if let image = job.imagePush {
            var object: [String: Any] = ["push": image.outcome.rawValue, "summary": image.summary, "tags": image.tags]
            if let repository = image.repository { object["repository"] = repository }
            if let digest = image.digest { object["digest"] = digest }
            if let size = image.size { object["size_bytes"] = size }
            fields["image"] = object
        }
        return fields
    }

    /// Determinate Nixd's post-build events for what a job's nix built, and what failed to build.
    public static func postBuild(_ report: JobReport, job: JobID, build: BuildID, repository: String) -> [KilnEvent] {
        report.built.map { derivation in
            KilnEvent(
                type: "built-path", buildID: build, jobID: job, repository: repository,
                fields: ["v": "1", "c": "BuiltPathResponseEventV1", "drv": derivation, "outputs": report.builtOutputs[derivation] ?? []])
        }
            + report.failedDerivations.map { derivation in
                KilnEvent(
                    type: "build-failure", buildID: build, jobID: job, repository: repository,
                    fields: ["v": "1", "c": "BuildFailureResponseEventV1", "drv": derivation])
            }
    }

    /// A running job's progress.
    public static func progress(_ progress: JobProgress, job: JobID, build: BuildID, repository: String) -> KilnEvent {
        var fields: [String: Any] = ["done": progress.done, "expected": progress.expected, "failed": progress.failed]
        if let building = progress.building { fields["building"] = building }
        return KilnEvent(type: "job.progress", buildID: build, jobID: job, repository: repository, fields: fields)
    }

    /// What became of posting a status.
    public static func status(_ entry: OutboxEntry, _ result: StatusDeliveryResult) -> KilnEvent? {
        let fields: [String: Any] = [
            "context": entry.status.context, "state": entry.status.state.rawValue, "description": entry.status.description,
            "sha": entry.commit.sha,
        ]
        switch result {
        case .delivered, .recorded:
            return KilnEvent(type: "status.posted", buildID: entry.buildID, repository: entry.commit.repository, fields: fields)
        case .dropped(let error):
            return KilnEvent(
                type: "status.failed", buildID: entry.buildID, repository: entry.commit.repository,
                fields: fields.merging(["error": error]) { $1 })
        case .retry:
            return nil
        }
    }
}
