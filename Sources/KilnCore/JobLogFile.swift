import Foundation
import KilnPipeline
import Synchronization

/// A job's log on disk, capped: the first half of the cap is written as it arrives, the
/// last half is kept in memory and written after a marker line when the log is closed.
/// Nothing in between is kept, so a runaway build cannot fill the disk.
public final class JobLogFile: LogSink {
    private struct State {
        var handle: FileHandle?
        var written = 0
        var tail: [UInt8] = []
        var omitted = 0
    }

    private let state: Mutex<State>
    private let headLimit: Int
    private let tailLimit: Int

    /// Creates (or truncates) the log at `path`, keeping at most about `cap` bytes.
    public init(path: String, cap: Int) throws {
        guard FileManager.default.createFile(atPath: path, contents: nil) else {
            throw CocoaError(.fileWriteUnknown, userInfo: [NSFilePathErrorKey: path])
        }
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        self.state = Mutex(State(handle: handle))
        self.headLimit = max(cap / 2, 1)
        self.tailLimit = max(cap - cap / 2, 1)
    }

    public func write(_ chunk: [UInt8]) {
        state.withLock { state in
            guard let handle = state.handle else { return }
            var rest = chunk[...]
            if state.written < headLimit {
                let head = rest.prefix(headLimit - state.written)
                try? handle.write(contentsOf: head)
                state.written += head.count
                rest = rest.dropFirst(head.count)
            }
            guard !rest.isEmpty else { return }
            state.tail.append(contentsOf: rest)
            if state.tail.count > tailLimit * 2 {
                // Trim in batches so appending stays amortised O(1).
                let excess = state.tail.count - tailLimit
                state.omitted += excess
                state.tail.removeFirst(excess)
            }
        }
    }

    /// Writes the kept tail (after a marker line when something was dropped) and closes the file.
    public func close() {
        state.withLock { state in
            guard let handle = state.handle else { return }
            if state.tail.count > tailLimit {
                let excess = state.tail.count - tailLimit
                state.omitted += excess
                state.tail.removeFirst(excess)
            }
            if state.omitted > 0 {
                let marker = "\n[kiln] … \(ByteCount.format(state.omitted)) of output omitted: the log keeps its first and last \(ByteCount.format(headLimit)) …\n"
                try? handle.write(contentsOf: Array(marker.utf8))
            }
            try? handle.write(contentsOf: state.tail)
            try? handle.close()
            state.handle = nil
            state.tail = []
        }
    }

    deinit { close() }
}

