import Foundation
import Synchronization

/// Samples the disk space a directory tree uses (allocated blocks) every 250 ms on a thread of
/// its own, and keeps the largest sample: a job's builds' peak storage.
final class StorageSampler: Sendable {
    private let state = Mutex<(peak: Int, stopped: Bool)>((0, false))
    private let directory: String

    init(directory: String) {
        self.directory = directory
        let thread = Thread { [self] in
            while !state.withLock({ $0.stopped }) {
                let size = Self.kilobytes(in: directory)
                state.withLock { $0.peak = max($0.peak, size) }
                Thread.sleep(forTimeInterval: 0.25)
            }
        }
        thread.start()
    }

    /// Stops sampling and returns the peak, after one last sample.
    func stop() -> Int {
        let last = Self.kilobytes(in: directory)
        return state.withLock {
            $0.stopped = true
            $0.peak = max($0.peak, last)
            return $0.peak
        }
    }

    /// KiB allocated to the files under `directory` (without following links).
    static func kilobytes(in directory: String) -> Int {
        guard let walker = FileManager.default.enumerator(atPath: directory) else { return 0 }
        var blocks = 0
        var status = stat()
        while let relative = walker.nextObject() as? String {
            if lstat(directory + "/" + relative, &status) == 0 { blocks += Int(status.st_blocks) }
        }
        return blocks / 2  // 512-byte blocks
    }
}
