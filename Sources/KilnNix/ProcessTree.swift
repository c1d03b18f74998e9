import Foundation

/// Finds and kills a process and everything it started.
///
/// nix's sandboxed builders run in their own session, so signalling nix's process group
/// does not reach them; if nix dies without cleaning up they are reparented away. Kiln
/// therefore snapshots nix's descendants (by parent pid, from /proc) while nix is alive
/// and kills that whole set.
enum ProcessTree {
    /// `pid` and all its living descendants.
    static func members(of pid: pid_t) -> [pid_t] {
        if hasChildrenLists { return descendants(of: pid) }
        var children: [pid_t: [pid_t]] = [:]
        for (process, parent) in allParents() { children[parent, default: []].append(process) }
        var result: [pid_t] = [pid]
        var index = 0
        while index < result.count {
            result += children[result[index]] ?? []
            index += 1
        }
        return result
    }

    /// Whether `pid` is running (not gone and not a zombie waiting to be reaped).
    static func isAlive(_ pid: pid_t) -> Bool {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
            let close = stat.lastIndex(of: ")")
        else { return false }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        return fields.first.map { $0 != "Z" && $0 != "X" } ?? false
    }

    /// Resident memory of `pid` and its descendants together, in KiB.
    static func residentKilobytes(of pid: pid_t) -> Int {
        let pageKilobytes = Int(sysconf(Int32(_SC_PAGESIZE))) / 1024
        return members(of: pid).reduce(0) { total, member in
            guard let statm = try? String(contentsOfFile: "/proc/\(member)/statm", encoding: .utf8) else { return total }
            let fields = statm.split(separator: " ")
            return total + (fields.count > 1 ? (Int(fields[1]) ?? 0) * pageKilobytes : 0)
        }
    }

    /// User plus system CPU seconds of `pid` and of the children it waited for (nix waits for
    /// its builders), read from its zombie once it has exited and before it is reaped. Waits up
    /// to two seconds for the process to exit; nil if it did not, or was already reaped.
    static func cpuSecondsOnceExited(_ pid: pid_t) -> Double? {
        for _ in 0..<200 {
            guard let (state, seconds) = cpu(pid) else { return nil }
            if state == "Z" { return seconds }
            usleep(10_000)
        }
        return nil
    }

    /// User plus system CPU seconds so far of `pid` and of the children it has waited for: a
    /// long-lived nix's builders are counted once it has reaped them.
    static func cpuSeconds(_ pid: pid_t) -> Double? { cpu(pid)?.seconds }

    /// `pid`'s state and the CPU seconds of it and its reaped children.
    private static func cpu(_ pid: pid_t) -> (state: Substring, seconds: Double)? {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
            let close = stat.lastIndex(of: ")")
        else { return nil }
        // Fields after "(comm)": state, ppid, pgrp, session, tty, tpgid, flags, minflt, cminflt,
        // majflt, cmajflt, utime, stime, cutime, cstime.
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        guard fields.count > 14 else { return nil }
        let ticks = fields[11...14].compactMap { Double($0) }.reduce(0, +)
        return (fields[0], ticks / Double(sysconf(Int32(_SC_CLK_TCK))))
    }

    /// SIGKILLs `pid` and its descendants until none is left (bounded, in case of a fork bomb).
    static func killAll(_ pid: pid_t) {
        for _ in 0..<20 {
            let living = members(of: pid).filter(isAlive)
            if living.isEmpty { return }
            for member in living { kill(member, SIGKILL) }
            usleep(20_000)
        }
    }

    /// Whether the kernel lists each thread's children (`/proc/PID/task/TID/children`).
    private static let hasChildrenLists = FileManager.default.fileExists(atPath: "/proc/self/task/\(getpid())/children")

    /// `pid` and its descendants, from the children each of their threads started: a few small
    /// reads per process of the tree, where finding parents reads every process on the machine
    /// (every 100 ms, for every running job).
    private static func descendants(of pid: pid_t) -> [pid_t] {
        var result: [pid_t] = [pid]
        var index = 0
        while index < result.count, result.count < 100_000 {
            let process = result[index]
            index += 1
            guard let threads = try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(process)/task") else { continue }
            for thread in threads {
                guard let listed = try? String(contentsOfFile: "/proc/\(process)/task/\(thread)/children", encoding: .utf8) else { continue }
                result += listed.split(whereSeparator: { $0 == " " || $0 == "\n" }).compactMap { pid_t($0) }
            }
        }
        return result
    }

    private static func allParents() -> [(pid_t, pid_t)] {
        guard let entries = try? FileManager.default.contentsOfDirectory(atPath: "/proc") else { return [] }
        return entries.compactMap { entry in
            guard let pid = pid_t(entry),
                let stat = try? String(contentsOfFile: "/proc/\(entry)/stat", encoding: .utf8),
                let close = stat.lastIndex(of: ")")
            else { return nil }
            // Fields after "(comm)": state, ppid, ...
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            guard fields.count > 1, let parent = pid_t(fields[1]) else { return nil }
            return (pid, parent)
        }
    }
}
