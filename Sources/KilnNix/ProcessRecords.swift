import Foundation
import Synchronization

/// Notes on disk of the processes Kiln's jobs are running, one file per supervised process,
/// so that a Kiln killed without a chance to stop them (`kill -9`, a crash) ends them at its
/// next start instead of building beside them.
///
/// A file names nix and every descendant seen so far (the sandboxed builders run in a session
/// of their own and may outlive nix), each as pid and start time, so a pid the kernel has since
/// given to another process is never signalled. Files are written without fsync: a crash of
/// Kiln keeps what it wrote in the page cache, and a machine that lost power lost the
/// processes too.
struct ProcessRecords: Sendable {
    /// The directory of the notes.
    var directory: String

    /// Starts a note for `pid`; the note is updated as the tree grows and removed by `close()`.
    func open(_ pid: pid_t) -> ProcessRecord {
        try? FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let record = ProcessRecord(path: "\(directory)/\(pid).pids")
        record.update([pid])
        return record
    }

    /// Kills every process a previous life left running (by its note, where the pid still has
    /// the start time written down) with its descendants, and removes the notes. Returns how
    /// many processes were still running.
    func endLeftovers() -> Int {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: directory) else { return 0 }
        var ended = 0
        for name in names where name.hasSuffix(".pids") {
            let path = "\(directory)/\(name)"
            let text = (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
            for line in text.split(separator: "\n") {
                let fields = line.split(separator: " ")
                guard fields.count == 2, let pid = pid_t(fields[0]), let start = UInt64(fields[1]), pid > 1,
                    ProcessTree.startTime(of: pid) == start
                else { continue }
                ProcessTree.killAll(pid)
                ended += 1
            }
            try? FileManager.default.removeItem(atPath: path)
        }
        return ended
    }
}

/// The note of one supervised process tree.
final class ProcessRecord: Sendable {
    private let path: String
    private let written = Mutex<Set<String>>([])

    init(path: String) { self.path = path }

    /// Adds these pids (with their start times) to the note; rewrites it only when something is new.
    func update(_ pids: [pid_t]) {
        let entries = pids.compactMap { pid in ProcessTree.startTime(of: pid).map { "\(pid) \($0)" } }
        let changed = written.withLock { seen -> String? in
            let before = seen.count
            seen.formUnion(entries)
            return seen.count == before ? nil : seen.sorted().joined(separator: "\n") + "\n"
        }
        guard let changed else { return }
        let temporary = path + ".tmp"
        if (try? changed.write(toFile: temporary, atomically: false, encoding: .utf8)) != nil {
            rename(temporary, path)
        }
    }

    /// Removes the note: the processes have ended.
    func close() { try? FileManager.default.removeItem(atPath: path) }
}
