import Foundation
import Hummingbird
import KilnCore
import KilnPipeline
import NIOCore

/// The web pages: plain HTML, every value escaped, no scripts.
enum Pages {
    static func html(_ status: HTTPResponse.Status, _ body: String) -> Response {
        Response(
            status: status,
            headers: [.contentType: "text/html; charset=utf-8", .contentSecurityPolicy: "default-src 'none'; style-src 'unsafe-inline'"],
            body: .init(byteBuffer: ByteBuffer(string: body)))
    }

    static func escape(_ text: String) -> String {
        var result = ""
        result.reserveCapacity(text.count)
        for character in text {
            switch character {
            case "&": result += "&amp;"
            case "<": result += "&lt;"
            case ">": result += "&gt;"
            case "\"": result += "&quot;"
            case "'": result += "&#39;"
            default: result.append(character)
            }
        }
        return result
    }

    private static let style = """
        body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:70em;padding:0 1em;color:#222}
        table{border-collapse:collapse;width:100%}td,th{text-align:left;padding:.3em .6em;border-bottom:1px solid #ddd;vertical-align:top}
        pre{background:#111;color:#eee;padding:1em;overflow-x:auto;white-space:pre-wrap;font-size:12px}
        .succeeded,.delivered{color:#17702d}.failed,.timed_out,.errored,.dropped{color:#b3261e}.cancelled,.skipped{color:#7a5b00}
        .queued,.planning,.running,.pending{color:#1a56b3}code{font-size:13px}
        """

    /// A page; with `live` (an `/api/v1/events` query) it reloads when those events arrive, at
    /// most once a second; with `refresh` too, without JavaScript every 3 seconds.
    private static func page(_ title: String, live: String?, refresh: Bool = false, _ content: String) -> String {
        """
        <!doctype html><html lang="en"><head><meta charset="utf-8"><title>\(escape(title))</title>
        \(refresh ? "<noscript><meta http-equiv=\"refresh\" content=\"3\"></noscript>" : "")\(live.map(liveScript) ?? "")<style>\(style)</style></head>
        <body><p><a href="/">Kiln</a></p>\(content)</body></html>

        """
    }

    /// Reloads the page when an event of `query` arrives (throttled to once a second). `query`
    /// is Kiln's own (ids and type names), never a request's text: it stands in a script.
    static func liveScript(_ query: String) -> String {
        let types = ["build.queued", "build.planned", "build.started", "build.finished", "job.started", "job.progress",
                     "job.finished", "status.posted", "status.failed"]
        return """
            <script>
            (function(){var s=new EventSource("/api/v1/events?\(query)"),t=null;function r(){if(!t){t=setTimeout(function(){location.reload()},1000)}}
            \(types.map { "s.addEventListener(\"\($0)\",r);" }.joined())})();</script>
            """
    }

    static func notFound(_ message: String) -> String {
        page("Not found", live: nil, "<h1>Not found</h1><p>\(escape(message))</p>")
    }

    /// The build list; `eventsFrom` is the event log's head when it was read, so that the page
    /// hears of every change after what it shows.
    static func index(_ builds: [BuildRecord], eventsFrom: Int64 = 0) -> String {
        let rows = builds.map { build in
            """
            <tr><td><a href="/builds/\(build.id)">#\(build.id)</a></td><td>\(escape(build.repository))</td>
            <td><code>\(escape(build.ref))</code></td><td><code>\(escape(CommitID.short(build.sha)))</code></td>
            <td class="\(build.state.rawValue)">\(build.state.rawValue)</td><td>\(escape(build.summary))</td></tr>
            """
        }.joined()
        let table = builds.isEmpty
            ? "<p>No builds yet. Point a forge's webhook at <code>/webhooks/&lt;forge&gt;</code> and push.</p>"
            : "<table><tr><th>Build</th><th>Repository</th><th>Ref</th><th>Commit</th><th>State</th><th>Summary</th></tr>\(rows)</table>"
        return page(
            "Kiln builds", live: "types=build.queued,build.planned,build.started,build.finished&last-event-id=\(eventsFrom)",
            refresh: builds.contains { !$0.state.isFinal }, "<h1>Builds</h1>\(table)")
    }

    /// What the page shows of one job.
    struct JobView {
        var job: JobRecord
        var log: LogExcerpt
        var progress: JobProgress?
        var derivations: [String]
    }

    /// A build's page; `eventsFrom` as for `index`.
    static func build(_ details: BuildDetails, jobs: [JobView], eventsFrom: Int64 = 0) -> String {
        let build = details.build
        var content = """
            <h1>Build #\(build.id) <span class="\(build.state.rawValue)">\(build.state.rawValue)</span></h1>
            <p>\(escape(build.repository)) · <code>\(escape(build.ref))</code> · <code>\(escape(build.sha))</code></p>
            <p>\(escape(build.summary))</p>
            """
        if !build.diagnostics.isEmpty {
            content += "<h2>Pipeline file problems</h2><pre>\(build.diagnostics.map(escape).joined(separator: "\n"))</pre>"
        }
        if !jobs.isEmpty {
            content += "<h2>Jobs</h2><table><tr><th>Job</th><th>State</th><th>Summary</th><th>Exit</th><th>Time</th><th>CPU</th><th>Peak memory</th></tr>"
            for view in jobs {
                let job = view.job
                let took = job.startedAt.map { start in
                    HumanDuration.format(.seconds((job.finishedAt ?? Date()).timeIntervalSince(start)))
                } ?? ""
                let summary = view.progress.map { "\(job.summary) — \($0.summary)" } ?? job.summary
                content += """
                    <tr><td><a href="#job-\(job.id)">\(escape(job.name))</a></td><td class="\(job.state.rawValue)">\(job.state.rawValue)</td>
                    <td>\(escape(summary))</td><td>\(job.exitCode.map(String.init) ?? "")</td><td>\(took)</td>
                    <td>\(job.cpuSeconds.map { String(format: "%.2f s", $0) } ?? "")</td>
                    <td>\(job.peakMemoryKilobytes.map { ByteCount.format($0 * 1024) } ?? "")</td></tr>
                    """
            }
            content += "</table>"
        }
        if !details.statuses.isEmpty {
            content += "<h2>Commit statuses</h2><table><tr><th>Context</th><th>State</th><th>Description</th><th>Delivery</th></tr>"
            for entry in details.statuses {
                let delivery = entry.delivery.rawValue + (entry.lastError.map { " (\($0))" } ?? "")
                content += """
                    <tr><td><code>\(escape(entry.status.context))</code></td><td class="\(entry.status.state.rawValue)">\(entry.status.state.rawValue)</td>
                    <td>\(escape(entry.status.description))</td><td class="\(entry.delivery.rawValue)">\(escape(delivery))</td></tr>
                    """
            }
            content += "</table>"
        }
        for view in jobs {
            let job = view.job
            content += "<h2 id=\"job-\(job.id)\">\(escape(job.name)) <a href=\"/api/v1/jobs/\(job.id)/log\">raw log</a></h2>"
            if !job.outputs.isEmpty {
                content += "<p>Outputs: " + job.outputs.map { output in
                    "<code>\(escape(output.path))</code>" + (output.narSize.map { " (\(ByteCount.format(Int($0))))" } ?? "")
                }.joined(separator: ", ") + "</p>"
            }
            if let cache = job.cacheSummary { content += "<p>Binary cache: \(escape(cache))</p>" }
            if !view.derivations.isEmpty {
                content += "<p>Derivation logs: " + view.derivations.map { name in
                    "<a href=\"/api/v1/jobs/\(job.id)/log?derivation=\(escape(name))\">\(escape(name))</a>"
                }.joined(separator: ", ") + "</p>"
            }
            if view.log.skipped > 0 { content += "<p>The first \(view.log.skipped) bytes are not shown; the raw log has them.</p>" }
            content += "<pre>\(ANSIHTML.render(view.log.text))</pre>"
        }
        let active = !build.state.isFinal
        return page(
            "Build #\(build.id) · \(build.repository)", live: active ? "build=\(build.id)&last-event-id=\(eventsFrom)" : nil,
            refresh: active, content)
    }
}
