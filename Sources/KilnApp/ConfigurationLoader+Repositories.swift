import Foundation
import KilnCore
import KilnForges
import KilnNix
import KilnPipeline

/// The `repositories` section: which forge, name, clone URL and policies.
extension ConfigReader {
    mutating func repositories(_ node: YAMLNode?, path: [String], forges: [KilnConfiguration.Forge])
        -> [KilnConfiguration.Repository]?
    {
        guard let node, !node.isNull else {
            ownProblems.append("\(file): repositories: add at least one repository to build")
            return nil
        }
        guard let items = yaml.list(node) else { return nil }
        var repositories: [KilnConfiguration.Repository] = []
        var seen: Set<String> = []
        for item in items {
            let keys = mapping(item, ["forge", "name", "clone-url", "forks", "pull-requests"])
            let here = item.path
            guard let forge = text(keys, "forge", here, required: true), let name = text(keys, "name", here, required: true),
                let cloneText = text(keys, "clone-url", here, required: true)
            else { continue }
            let type = forges.first { $0.name == forge }?.type
            if type == nil {
                report(keys["forge"], here + ["forge"], "no forge named '\(forge)' under forges")
            }
            // GitLab names may have subgroups; Bitbucket Data Center's personal projects start with '~'.
            let pattern =
                type == .gitlab ? "^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)+$"
                : type == .bitbucketServer ? "^~?[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$" : "^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$"
            if name.range(of: pattern, options: .regularExpression) == nil {
                report(keys["name"], here + ["name"], type == .gitlab ? "'\(name)' is not group/name" : "'\(name)' is not owner/name")
            }
            if !seen.insert("\(forge)/\(name.lowercased())").inserted {
                report(keys["name"], here + ["name"], "'\(name)' is configured twice for forge '\(forge)'")
            }
            let cloneURL = self.cloneURL(cloneText, keys["clone-url"], here + ["clone-url"])
            let forksText = text(keys, "forks", here) ?? "require-approval"
            guard let forks = ForkPolicy(rawValue: forksText) else {
                report(keys["forks"], here + ["forks"],
                    "'\(forksText)' is not one of: \(ForkPolicy.allCases.map(\.rawValue).joined(separator: ", "))")
                continue
            }
            let modeText = text(keys, "pull-requests", here) ?? "merge"
            guard let mode = PullRequestMode(rawValue: modeText) else {
                report(keys["pull-requests"], here + ["pull-requests"],
                    "'\(modeText)' is not one of: \(PullRequestMode.allCases.map(\.rawValue).joined(separator: ", "))")
                continue
            }
            if let cloneURL {
                repositories.append(
                    KilnConfiguration.Repository(forge: forge, name: name, cloneURL: cloneURL, forks: forks, pullRequests: mode))
            }
        }
        return repositories
    }

    // MARK: Values

    /// `https://` and `ssh://` URLs without passwords, and `file://` URLs; `file:relative/path`
    /// is resolved against the configuration file's directory.
    mutating func cloneURL(_ text: String, _ node: YAMLNode?, _ path: [String]) -> String? {
        if text.hasPrefix("file:") {
            var rest = String(text.dropFirst(5))
            if rest.hasPrefix("//") {
                rest.removeFirst(2)
                guard rest.hasPrefix("/") else {
                    report(node, path, "'\(text)' must be file:///absolute/path, or file:relative/path")
                    return nil
                }
            }
            return "file://" + resolve(rest)
        }
        guard text.hasPrefix("https://") || text.hasPrefix("ssh://"), let url = URLComponents(string: text), url.host != nil
        else {
            report(node, path, "'\(text)' is not an https://, ssh:// or file:// URL")
            return nil
        }
        if url.password != nil || (text.hasPrefix("https://") && url.user != nil) {
            report(node, path, "credentials do not belong in clone-url; put the token in the forge's token-file")
            return nil
        }
        return text
    }
}
