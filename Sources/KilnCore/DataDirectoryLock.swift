import Foundation
import ServiceLifecycle
import Synchronization

/// One Kiln per data directory: an exclusive `flock` on `<data-dir>/kiln.lock`, held while the
/// service group runs. A second `kiln serve` on the same directory would otherwise delete the
/// first one's work trees and run its jobs again beside it.
public final class DataDirectoryLock: Service, Sendable {
    /// The open lock file; nil once released (released once: a second close could close a reused number).
    private let descriptor: Mutex<Int32?>
    /// The lock file.
    public let path: String

    /// Takes the lock, or throws `DataDirectoryLock.Busy` naming the directory.
    public init(dataDirectory: String) throws {
        path = dataDirectory + "/kiln.lock"
        let descriptor = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else { throw Busy(message: "cannot open \(path): errno \(errno)") }
        guard flock(descriptor, LOCK_EX | LOCK_NB) == 0 else {
            Glibc.close(descriptor)
            throw Busy(
                message: "another kiln serve is using \(dataDirectory) (it holds \(path)); stop it first, or give this one its own storage.data-dir")
        }
        // The holder's pid, for an operator who wants to know which process it is.
        let pid = Array("\(getpid())\n".utf8)
        _ = ftruncate(descriptor, 0)
        _ = pid.withUnsafeBytes { write(descriptor, $0.baseAddress, $0.count) }
        self.descriptor = Mutex(descriptor)
    }

    /// Holds the lock until the graceful shutdown, then lets it go.
    public func run() async throws {
        try? await gracefulShutdown()
        release()
    }

    /// Lets the lock go. Unlocked before the file is closed: a process forked at that moment
    /// (to exec nix or git) holds a copy of the descriptor until its exec, and closing ours alone
    /// would leave the lock held through that copy.
    public func release() {
        guard let descriptor = descriptor.withLock({ $0.take() }) else { return }
        flock(descriptor, LOCK_UN)
        Glibc.close(descriptor)
    }

    /// The data directory is in use.
    public struct Busy: Error, CustomStringConvertible {
        /// What happened and what to do.
        public var message: String
        public var description: String { message }
    }
}
