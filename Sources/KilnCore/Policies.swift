import Foundation
/// What to do with pull requests from forks (`repositories[].forks`).
public enum ForkPolicy: String, Sendable, Hashable, CaseIterable {
    /// Build them like any pull request.
    case build
    /// Build after an administrator approves the exact head commit; with the base branch's
    /// pipeline file, and never pushing to the binary cache.
    case requireApproval = "require-approval"
    /// Never build them.
    case ignore
}

/// What a pull request build builds (`repositories[].pull-requests`).
public enum PullRequestMode: String, Sendable, Hashable, CaseIterable {
    /// The head merged into the current tip of the base branch: what would be merged.
    case merge
    /// The head alone.
    case head
}

/// How a repository's pull request heads are fetched.
public enum PullRequestFetch: Sendable, Hashable {
    /// From a ref the forge keeps in the target repository; `%d` is the number
    /// (`refs/pull/%d/head`, `refs/merge-requests/%d/head`, `refs/pull-requests/%d/from`).
    case ref(String)
    /// From the source branch of the fork, cloned from `base` + `/<owner>/<name>.git`,
    /// where `base` is the configured forge URL, never one from a payload (Bitbucket Cloud).
    case forkBranch(base: String)

    /// The ref for pull request `number`, for `.ref`.
    public func ref(for number: Int) -> String? {
        guard case .ref(let pattern) = self else { return nil }
        return pattern.replacingOccurrences(of: "%d", with: String(number))
    }
}
