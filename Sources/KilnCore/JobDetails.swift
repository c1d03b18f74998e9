import Foundation
import KilnPipeline

/// A job's account in markdown, for forges that show one (GitHub check runs).
public enum JobDetails {
    /// Outcome, time, accounting, outputs and the end of the log.
    public static func markdown(_ job: JobRecord, _ report: JobReport, logTail: String) -> String {
        var text = "**\(JobStateMachine.conclusion(of: report).2)**\n\n"
        text += "| | |\n|---|---|\n"
        text += "| Time | \(HumanDuration.format(report.duration)) |\n"
        if let cpu = report.cpuSeconds { text += String(format: "| CPU | %.2f s |\n", cpu) }
        if let memory = report.peakMemoryKilobytes { text += "| Peak memory | \(ByteCount.format(memory * 1024)) |\n" }
        if let code = report.exitCode { text += "| nix exit code | \(code) |\n" }
        if !report.derivations.isEmpty {
            text += "| Derivations | \(report.derivations.count): built \(report.built.count) here"
                + (report.waitedFor.isEmpty ? "" : ", waited for \(report.waitedFor.count) another job built")
                + (report.machines.isEmpty ? "" : ", on \(report.machines.joined(separator: ", "))") + " |\n"
        }
        if let cache = report.cache { text += "| Binary cache | \(cache.summary) |\n" }
        if let image = report.image { text += "| Image | \(image.summary) |\n" }
        if !report.outputs.isEmpty {
            text += "\n**Outputs**\n\n" + report.outputs.map { "- `\($0.path)`" + ($0.narSize.map { " (\(ByteCount.format(Int($0))))" } ?? "") }
                .joined(separator: "\n") + "\n"
        }
        if !logTail.isEmpty {
            text += "\n**End of the log**\n\n" + fenced(logTail)
        }
        return text
    }

    /// `text` as a code block whose fence is longer than any run of backticks in it, so a log
    /// line cannot end the block (CommonMark).
    static func fenced(_ text: String) -> String {
        var longest = 0
        var run = 0
        for character in text {
            run = character == "`" ? run + 1 : 0
            longest = max(longest, run)
        }
        let fence = String(repeating: "`", count: max(3, longest + 1))
        return "\(fence)\n\(text)\n\(fence)\n"
    }

    /// The last `lines` lines of a log file, without terminal colours; empty when unreadable.
    public static func tail(of path: String, lines: Int = 40) -> String {
        guard let handle = FileHandle(forReadingAtPath: path) else { return "" }
        defer { try? handle.close() }
        let size = (try? handle.seekToEnd()) ?? 0
        try? handle.seek(toOffset: size > 16384 ? size - 16384 : 0)
        let text = ANSI.strip(String(decoding: (try? handle.readToEnd()) ?? Data(), as: UTF8.self))
        return text.split(separator: "\n", omittingEmptySubsequences: false).suffix(lines + 1).joined(separator: "\n")
            .trimmingCharacters(in: .whitespacesAndNewlines)
    }
}
