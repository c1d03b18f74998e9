/// A job may build only what its own repository defines: its targets never name a path or a
/// flake outside the work tree. `kiln check` reports these problems with the target's position;
/// the executor checks again before every evaluation.
extension JobTarget {
    /// Why this target reaches outside the repository, or nil when it stays inside.
    public var confinementProblem: String? {
        switch self {
        case .installables(let installables): return installables.lazy.compactMap(Self.installableConfinementProblem).first
        case .classic(let file, _): return Self.fileConfinementProblem(file)
        case .flakeCheck: return nil
        }
    }

    /// Why a flake installable is not the repository's own, or nil when it is. Accepted: `.`,
    /// `.#attr`, `./dir` and `./dir#attr` whose directory stays inside the repository.
    public static func installableConfinementProblem(_ installable: String) -> String? {
        let reference = installable.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init) ?? ""
        if reference.hasPrefix("/") {
            return "installable '\(installable)' is an absolute path; name the repository's own flake, such as '.#\(attributeHint(installable))'"
        }
        if reference.contains(":") {
            return "installable '\(installable)' is a flake reference outside the repository; a job builds the repository's own flake ('.#name'), and other flakes belong in its inputs"
        }
        if reference.contains("?") {
            return "installable '\(installable)' has flake URL parameters; give the directory as './dir#name'"
        }
        guard reference == "." || reference.hasPrefix("./") else {
            return "installable '\(installable)' is not in the repository (a bare name is looked up in nix's flake registry); write '.#\(attributeHint(installable))'"
        }
        if reference != ".", leavesRoot(reference.dropFirst(2)) {
            return "installable '\(installable)' leaves the repository through '..'"
        }
        return nil
    }

    /// Why a classic nix file is not inside the repository, or nil when it is.
    public static func fileConfinementProblem(_ path: String) -> String? {
        if path.hasPrefix("/") { return "file '\(path)' must be relative to the repository root" }
        if path.contains(":") && path.split(separator: "/").first?.contains(":") == true {
            return "file '\(path)' is a URL; give a path inside the repository"
        }
        if leavesRoot(Substring(path)) { return "file '\(path)' must stay inside the repository" }
        return nil
    }

    /// Whether a relative path climbs above its starting directory.
    private static func leavesRoot(_ path: Substring) -> Bool {
        var depth = 0
        for component in path.split(separator: "/", omittingEmptySubsequences: true) {
            switch component {
            case ".": continue
            case "..":
                depth -= 1
                if depth < 0 { return true }
            default: depth += 1
            }
        }
        return false
    }

    private static func attributeHint(_ installable: String) -> String {
        let parts = installable.split(separator: "#", maxSplits: 1)
        return parts.count == 2 ? String(parts[1]) : "name"
    }
}
