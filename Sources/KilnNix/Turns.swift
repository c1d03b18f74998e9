import KilnPipeline
import Synchronization

/// Turns for at most a number of tasks at once.
final class Turns: Sendable {
    private let free: Mutex<Int>

    init(_ count: Int) { free = Mutex(count) }

    /// Takes a turn when one is free.
    func tryTake() -> Bool {
        free.withLock { free in
            guard free > 0 else { return false }
            free -= 1
            return true
        }
    }

    /// Gives a turn back.
    func give() { free.withLock { $0 += 1 } }
}

/// A job's evaluation messages, kept in memory until its log is written: the first and the
/// last lines up to `cap` bytes, so that a repository tracing without end costs Kiln nothing.
struct CappedText {
    let cap: Int
    private var head: [UInt8] = []
    private var tail: [UInt8] = []
    private var dropped = 0

    init(cap: Int) { self.cap = cap }

    mutating func append(_ line: ArraySlice<UInt8>) {
        if head.count < cap / 4 {
            head += line
            head.append(0x0A)
            return
        }
        tail += line
        tail.append(0x0A)
        if tail.count > cap {
            let excess = tail.count - cap * 3 / 4
            dropped += excess
            tail.removeFirst(excess)
        }
    }

    var text: String {
        let middle = dropped > 0 ? "[kiln] … \(ByteCount.format(dropped)) of evaluation messages left out …\n" : ""
        return String(decoding: head, as: UTF8.self) + middle + String(decoding: tail, as: UTF8.self)
    }
}
