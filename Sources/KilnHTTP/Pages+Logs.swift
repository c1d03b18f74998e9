import Foundation
import KilnCore

/// A job's logs as the build page shows them: one card per derivation nix built for it, grouped
/// failed, building, succeeded (succeeded folded), then the job's own log; every line numbered
/// with a permalink (`#j12-d3-L120`), build phases as sticky headers, the middle of a long log
/// loaded on demand, and a search over the job's lines.
extension Pages {
    /// One derivation's log.
    struct DerivationLog {
        /// `<hash>-<name>.drv`.
        var name: String
        /// Its lines; nil for a succeeded card, which is folded and read only when asked for.
        var lines: LogLines?
    }

    /// Where a derivation stands, from its job.
    enum DerivationState: String {
        case failed, building, succeeded
    }

    /// Derivation logs read per job, at most; the others are listed as links.
    static let maxDerivationCards = 50

    static func logsHTML(_ view: JobView, markFirstError: Bool) -> String {
        let job = view.job
        let cards = view.derivationLogs.enumerated().map { (index: $0.offset + 1, log: $0.element, state: derivationState($0.element.name, of: job)) }
        let ordered = [DerivationState.failed, .building, .succeeded].flatMap { group in cards.filter { $0.state == group } }
        var markError = markFirstError
        var html = "<div class=\"job-log\"><input type=\"search\" class=\"log-search\" placeholder=\"Search this job's log\" aria-label=\"Search the log of \(escape(job.name))\">"
        if !cards.isEmpty {
            html += "<p class=\"groups\">"
            for group in [DerivationState.failed, .building, .succeeded] {
                let members = ordered.filter { $0.state == group }
                guard !members.isEmpty else { continue }
                html += "<span class=\"\(group.rawValue)\">\(group.rawValue.capitalized) (\(members.count)):</span> "
                html += members.map { "<a href=\"#j\(job.id)-d\($0.index)\">\(escape(label($0.log.name)))</a>" }.joined(separator: ", ") + " "
            }
            html += "</p>"
        }
        for card in ordered {
            let prefix = "j\(job.id)-d\(card.index)"
            let source = "/api/v1/jobs/\(job.id)/log?derivation=\(escape(percentEncoded(card.log.name)))"
            let open = card.state != .succeeded
            html += "<details class=\"drv \(card.state.rawValue)\" id=\"\(prefix)\"\(open ? " open" : "")><summary>"
                + "<span class=\"\(card.state.rawValue)\">\(card.state == .failed ? "✗" : card.state == .building ? "●" : "✓")</span> "
                + "\(escape(label(card.log.name))) · <a href=\"\(source)\">raw</a></summary>"
                + (card.log.lines.map {
                    "<pre class=\"lines\">\(linesHTML($0, prefix: prefix, source: source, markFirstError: markError && card.state == .failed))</pre>"
                } ?? "<p><a href=\"\(source)\">Open this derivation's log</a></p>") + "</details>"
            if card.state == .failed { markError = false }
        }
        let others = view.derivationNames.count - view.derivationLogs.count
        if others > 0 {
            html += "<p>\(others) more derivation logs: " + view.derivationNames.dropFirst(view.derivationLogs.count).map { name in
                "<a href=\"/api/v1/jobs/\(job.id)/log?derivation=\(escape(percentEncoded(name)))\">\(escape(label(name)))</a>"
            }.joined(separator: ", ") + "</p>"
        }
        let follow = job.state == .running ? " data-follow=\"/api/v1/jobs/\(job.id)/log?follow=1&amp;offset=\(view.jobLog.size)\"" : ""
        html += "<details class=\"joblog\"\(cards.isEmpty || job.state == .running || markError ? " open" : "")><summary>Job log</summary>"
            + "<pre class=\"lines\"\(follow)>\(linesHTML(view.jobLog, prefix: "j\(job.id)", source: "/api/v1/jobs/\(job.id)/log", markFirstError: markError))</pre></details></div>"
        return html
    }

    /// Where a derivation of `job` stands: building while the job runs; succeeded when the job
    /// did or nix built it; otherwise failed.
    static func derivationState(_ name: String, of job: JobRecord) -> DerivationState {
        if job.state == .running { return .building }
        if job.state == .succeeded || job.built.contains(where: { ($0 as NSString).lastPathComponent == name }) { return .succeeded }
        return .failed
    }

    /// `hash-name.drv` without its hash.
    static func label(_ derivation: String) -> String {
        guard let dash = derivation.firstIndex(of: "-") else { return derivation }
        return String(derivation[derivation.index(after: dash)...])
    }

    /// Numbered lines with permalinks, phases as sticky headers, the gap as a button.
    static func linesHTML(_ lines: LogLines, prefix: String, source: String, markFirstError: Bool) -> String {
        var renderer = ANSIHTML()
        var html = ""
        var marked = !markFirstError
        func add(_ line: LogLines.Line) {
            let plain = plainText(line.text)
            if let phase = phase(plain) { html += "<span class=\"phase\">\(escape(phase))</span>" }
            let id = "\(prefix)-L\(line.number)"
            var classes = "l"
            var anchor = ""
            if !marked, isError(plain) {
                marked = true
                classes += " first-error"
                anchor = " data-first-error"
            }
            html += "<span class=\"\(classes)\" id=\"\(id)\"\(anchor)><a class=\"n\" href=\"#\(id)\">\(line.number)</a>\(renderer.render(line.text))\n</span>"
        }
        lines.head.forEach(add)
        if let gap = lines.gap {
            html += "<span class=\"gap\"><button type=\"button\" class=\"more\" data-src=\"\(source)\" data-range=\"bytes=\(gap.bytes.lowerBound)-\(gap.bytes.upperBound - 1)\" "
                + "data-first=\"\(gap.firstLine)\" data-prefix=\"\(prefix)\">Show lines \(gap.firstLine)–\(gap.lastLine)</button> "
                + "<a href=\"\(source)\">or the raw log</a>\n</span>"
        }
        lines.tail.forEach(add)
        return html
    }

    /// A line without its colour codes.
    static func plainText(_ text: String) -> String {
        guard text.contains("\u{1B}") else { return text }
        return text.replacingOccurrences(of: "\u{1B}\\[[0-9;]*[A-Za-z]", with: "", options: .regularExpression)
    }

    /// The build phase a line starts (stdenv's `Running phase: buildPhase`), if any.
    static func phase(_ line: String) -> String? {
        // In the job's log nix prefixes a builder's lines with `name> `.
        var text = Substring(line)
        if !text.hasPrefix("Running phase: "), let marker = text.range(of: "> ") { text = text[marker.upperBound...] }
        guard text.hasPrefix("Running phase: ") else { return nil }
        return String(text.dropFirst("Running phase: ".count))
    }

    /// Whether a line reports an error (nix's `error:`, a builder's `error`/`failed`).
    static func isError(_ line: String) -> Bool {
        let lower = line.lowercased()
        return lower.contains("error") || lower.contains("failed")
    }
}
