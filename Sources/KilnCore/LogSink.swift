/// Where a job's output goes as it arrives.
public protocol LogSink: Sendable {
    /// Appends a chunk of output. Never blocks for long; never throws.
    func write(_ chunk: [UInt8])

    /// Receives the build's progress as nix reports it. Sinks that do not show progress ignore it.
    func progress(_ progress: JobProgress)
}

extension LogSink {
    public func progress(_ progress: JobProgress) {}

    /// Appends a line Kiln itself writes, marked `[kiln]`.
    public func note(_ line: String) {
        write(Array("[kiln] \(line)\n".utf8))
    }
}

/// Sends output to several sinks (the log file and a terminal).
public struct TeeSink: LogSink {
    private let sinks: [any LogSink]

    /// A sink that writes to each of `sinks` in order.
    public init(_ sinks: [any LogSink]) { self.sinks = sinks }

    public func write(_ chunk: [UInt8]) {
        for sink in sinks { sink.write(chunk) }
    }

    public func progress(_ progress: JobProgress) {
        for sink in sinks { sink.progress(progress) }
    }
}
