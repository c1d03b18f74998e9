import Crypto

/// Comparisons whose time does not depend on the inputs' contents or lengths.
public enum ConstantTime {
    /// Whether `a` and `b` are the same bytes.
    ///
    /// Both sides are hashed with SHA-256 first and the two 32-byte digests are compared in full,
    /// so the comparison never depends on how long either side is or where they differ (a length
    /// folded into a byte, as before, let a 1-byte guess match a 257-byte token 1 time in 16).
    public static func equals(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        let left = Array(SHA256.hash(data: a))
        let right = Array(SHA256.hash(data: b))
        var difference: UInt8 = 0
        for index in 0..<SHA256.byteCount { difference |= left[index] ^ right[index] }
        return difference == 0
    }
}
