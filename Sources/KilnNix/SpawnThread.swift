import Foundation
import Synchronization

/// A task executor with one thread of its own that never ends. Processes are started from it
/// because Linux's parent-death signal follows the *thread* that forked: a process started
/// from a pool thread would be killed when that thread idles out, long before Kiln ends.
final class SpawnThread: TaskExecutor, @unchecked Sendable {
    /// The one spawning thread.
    static let shared = SpawnThread()

    private let condition = NSCondition()
    private var queue: [UnownedJob] = []

    private init() {
        let thread = Thread { [unowned self] in self.loop() }
        thread.name = "kiln-spawn"
        thread.start()
    }

    func enqueue(_ job: consuming ExecutorJob) {
        let unowned = UnownedJob(job)
        condition.lock()
        queue.append(unowned)
        condition.signal()
        condition.unlock()
    }

    private func loop() {
        while true {
            condition.lock()
            while queue.isEmpty { condition.wait() }
            let job = queue.removeFirst()
            condition.unlock()
            job.runSynchronously(on: asUnownedTaskExecutor())
        }
    }
}

/// Makes a process die with Kiln: `setpriv --pdeathsig KILL` sets the parent-death signal and
/// runs the command (nix keeps the signal across exec). Without setpriv the command runs as it is.
enum ParentDeath {
    static let setpriv = "/usr/bin/setpriv"

    static func wrap(_ executable: String, _ arguments: [String]) -> (String, [String]) {
        guard FileManager.default.isExecutableFile(atPath: setpriv) else { return (executable, arguments) }
        return (setpriv, ["--pdeathsig", "KILL", "--", executable] + arguments)
    }
}
