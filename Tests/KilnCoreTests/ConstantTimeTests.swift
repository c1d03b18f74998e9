import Testing

@testable import KilnCore

@Suite struct ConstantTimeTests {
    static let lengths = [0, 1, 255, 256, 257, 512]

    /// Every pair of lengths: only equal bytes compare equal, whatever either side's length.
    @Test(arguments: lengths, lengths)
    func onlyEqualBytesAreEqual(left: Int, right: Int) {
        let a = [UInt8](repeating: 0x61, count: left)
        let b = [UInt8](repeating: 0x61, count: right)
        #expect(ConstantTime.equals(a, b) == (left == right))
        // A prefix of the secret, or the secret with a byte changed, never matches.
        if left > 0 {
            var changed = a
            changed[left - 1] ^= 0x01
            #expect(!ConstantTime.equals(changed, a))
            #expect(!ConstantTime.equals(Array(a.dropLast()), a))
        }
    }

    /// The length used to be folded into one byte: 257 and 1 differ by 256, which looked equal.
    @Test func lengthsThatDifferByAMultipleOf256AreNotEqual() {
        let token = [UInt8](repeating: 0x61, count: 257)
        #expect(!ConstantTime.equals([0x61], token))
        #expect(!ConstantTime.equals([], [UInt8](repeating: 0, count: 256)))
    }
}
