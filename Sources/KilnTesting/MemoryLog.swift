import KilnCore
import Synchronization

/// A log sink that keeps everything in memory, for assertions.
public final class MemoryLog: LogSink {
    private let bytes = Mutex<[UInt8]>([])

    /// An empty log.
    public init() {}

    public func write(_ chunk: [UInt8]) { bytes.withLock { $0 += chunk } }

    /// Everything written so far, as text.
    public var text: String { String(decoding: bytes.withLock { $0 }, as: UTF8.self) }
}
