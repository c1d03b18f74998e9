import Foundation

/// Finds what a killed Kiln left running. Every process Kiln starts for a job carries
/// `KILN_PROCESSES=<data directory>` in its environment (inherited by nix, and set inside the
/// evaluation jail), so the next start on the same data directory finds them in `/proc` and
/// kills them with their descendants, before interrupted jobs are queued again. The mark is
/// on the process from its first instruction: no process escapes it by being started in the
/// instant Kiln died. (Builders in nix's sandbox get only their derivation's environment; they
/// die with nix, which runs with Kiln's death as its parent-death signal.)
struct ProcessMark: Sendable {
    /// Names this Kiln's processes: its data directory.
    var value: String

    /// The environment variable that marks a process.
    let variable = "KILN_PROCESSES"

    /// Kills every living process marked with this value, and its descendants; returns how many.
    func endLeftovers() -> Int {
        let needle = Array("\(variable)=\(value)".utf8)
        guard let entries = try? FileManager.default.contentsOfDirectory(atPath: "/proc") else { return 0 }
        var ended = 0
        for entry in entries {
            guard let pid = pid_t(entry), pid > 1, pid != getpid(), ProcessTree.isAlive(pid),
                let environment = FileManager.default.contents(atPath: "/proc/\(entry)/environ"),
                environment.split(separator: 0).contains(where: { $0.elementsEqual(needle) })
            else { continue }
            ProcessTree.killAll(pid)
            ended += 1
        }
        return ended
    }
}
