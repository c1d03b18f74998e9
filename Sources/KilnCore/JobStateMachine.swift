import Foundation
import KilnPipeline

/// The life of one job, as a value: feed it an input, carry out the action it returns.
///
/// ```
/// queued ──start──▶ running ──finish──▶ succeeded | failed | timed_out | cancelled | errored
///   │                  │
///   ├─dependency not succeeded──▶ skipped
///   ├─cancel──▶ cancelled          └─cancel──▶ (stop nix; the outcome arrives through finish)
///   └◀──────────── requeue (Kiln restarted mid-run) ──┘
/// ```
public struct JobStateMachine: Sendable, Hashable {
    /// Something that happened to the job.
    public enum Input: Sendable, Hashable {
        /// A worker took the job.
        case start
        /// The executor returned.
        case finish(JobReport)
        /// A job this one needs ended without succeeding.
        case dependencyDidNotSucceed(name: String, state: JobState)
        /// Cancel the job.
        case cancel(CancelReason)
        /// Kiln restarted while the job ran; run it again.
        case requeue
    }

    /// What the owner must do.
    public enum Action: Sendable, Hashable {
        /// Nothing: the input does not apply in this state.
        case none
        /// Run nix for the job.
        case run
        /// Stop the running nix; its outcome will arrive as `.finish`.
        case stop(CancelReason)
        /// The job ended: record it and post this final status.
        case report(StatusState, description: String)
    }

    /// Current state.
    public private(set) var state: JobState
    /// Summary of the current state.
    public private(set) var summary: String
    /// The job may fail without failing the build; its failures say so.
    public let allowFailure: Bool

    /// A machine in `state`.
    public init(state: JobState = .queued, summary: String = "queued", allowFailure: Bool = false) {
        self.state = state
        self.summary = summary
        self.allowFailure = allowFailure
    }

    /// Applies `input` and returns what to do. An input that arrives after the job ended (a
    /// report after the watchdog ended it, a late cancel) is `.none`; an input that cannot
    /// happen (a queued job reporting, a running one starting again) is a programming error.
    public mutating func apply(_ input: Input) -> Action {
        switch (state, input) {
        case (.queued, .start):
            state = .running
            summary = "building"
            return .run
        case (.running, .finish(let report)):
            let (state, status, description) = Self.conclusion(of: report)
            let allowed = allowFailure && [.failed, .timedOut, .errored].contains(state)
            return end(state, status, allowed ? "allowed to fail: " + description : description)
        case (.queued, .dependencyDidNotSucceed(let name, let dependencyState)):
            return end(.skipped, .cancelled, "skipped: needs '\(name)', which \(Self.phrase(dependencyState))")
        case (.queued, .cancel(let reason)):
            return end(.cancelled, .cancelled, Self.describe(reason))
        case (.running, .cancel(let reason)):
            return .stop(reason)
        case (.running, .requeue):
            state = .queued
            summary = "queued again: Kiln restarted while it ran"
            return .none
        case (_, .finish), (_, .cancel), (_, .dependencyDidNotSucceed):
            // Only an ended job gets here: the watchdog or recovery ended it first, or a cancel
            // or a failed dependency arrives after its end. It keeps that end.
            precondition(state.isFinal, "a \(state.rawValue) job cannot take \(input)")
            return .none
        case (_, .start), (_, .requeue):
            preconditionFailure("a \(state.rawValue) job cannot take \(input)")
        }
    }

    private mutating func end(_ state: JobState, _ status: StatusState, _ description: String) -> Action {
        self.state = state
        self.summary = description
        return .report(status, description: description)
    }

    /// The final state, status and description for an executor report.
    public static func conclusion(of report: JobReport) -> (JobState, StatusState, String) {
        let took = HumanDuration.format(report.duration)
        switch report.outcome {
        case .succeeded:
            let count = report.outputs.count
            let what = count == 1 ? "1 output" : "\(count) outputs"
            return (.succeeded, .succeeded, "built \(what) in \(took)" + (report.image?.brief.map { "; " + $0 } ?? ""))
        case .failed(let exitCode, let reason):
            return (.failed, .failed, "failed after \(took) (nix exit \(exitCode)): \(reason)")
        case .timedOut(let after, let silent):
            let limit = KilnDuration.format(after)
            return (.timedOut, .failed, silent ? "no output for \(limit); stopped" : "timed out after \(limit)")
        case .cancelled(let reason):
            return (.cancelled, .cancelled, describe(reason))
        case .errored(let message):
            return (.errored, .errored, "Kiln error: \(message)")
        }
    }

    static func describe(_ reason: CancelReason) -> String {
        switch reason {
        case .requested: return "cancelled"
        case .superseded(let sha): return "superseded by \(CommitID.short(sha))"
        case .shutdown: return "cancelled: Kiln shut down"
        case .pullRequestClosed(let merged): return merged ? "cancelled: the pull request was merged" : "cancelled: the pull request was closed"
        }
    }

    /// The reason `describe` wrote as `text` (a build's cancel summary, read back by the instance
    /// that runs its job); `requested` for any other text.
    public static func reason(described text: String) -> CancelReason {
        if text.hasPrefix("superseded by ") { return .superseded(by: String(text.dropFirst("superseded by ".count))) }
        if text == describe(.pullRequestClosed(merged: true)) { return .pullRequestClosed(merged: true) }
        if text == describe(.pullRequestClosed(merged: false)) { return .pullRequestClosed(merged: false) }
        return .requested
    }

    static func phrase(_ state: JobState) -> String {
        switch state {
        case .failed: return "failed"
        case .timedOut: return "timed out"
        case .cancelled: return "was cancelled"
        case .errored: return "hit a Kiln error"
        case .skipped: return "was skipped"
        case .queued, .running, .succeeded: return "did not succeed"
        }
    }
}

