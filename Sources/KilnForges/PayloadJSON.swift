import Foundation

/// A forge payload's JSON, checked in full against RFC 8259 in one pass and indexed, so that a
/// `Decodable` reads the few fields Kiln uses without turning the rest into Swift values.
///
/// `JSONDecoder` builds a dictionary of every key of every object it opens and a `String` for
/// each of them: on a real 28 KB pull request event that was three quarters of intake's CPU.
/// Here an object's keys are compared as bytes, in place, and only the values asked for are
/// converted. What is accepted is what `JSONDecoder` accepts (one value, nesting at most 512
/// deep, valid escapes, a leading byte order mark; the first of two equal keys wins), except
/// trailing commas and what is in strings it never reads (bytes that are not UTF-8, control
/// characters, bad escapes in a repeated key's later value): RFC 8259 forbids them, no forge
/// writes them, and `JSONDecoder` lets them through.
final class PayloadJSON {
    /// What a token is.
    enum Kind: UInt8 {
        case object, array, string, number, bool, null
    }

    /// One value of the document, in document order: an object's token is followed by its keys
    /// (string tokens) and values, alternately; an array's by its elements.
    struct Token {
        var kind: Kind
        /// A string with backslash escapes, which must be unescaped to be read or compared.
        var escaped: Bool
        /// The value's bytes; a string's between its quotes.
        var start: Int32
        var end: Int32
        /// The index of the token after this value and everything in it.
        var next: Int32
    }

    /// Malformed JSON; where does not matter to the forges' callers.
    struct Invalid: Error {}

    /// Deepest nesting accepted, as `JSONDecoder`'s.
    static let maxDepth = 512

    let bytes: [UInt8]
    let tokens: [Token]

    /// Checks and indexes `bytes`.
    /// - Throws: `Invalid` unless `bytes` is exactly one JSON value, with only whitespace around it.
    init(_ bytes: [UInt8]) throws(Invalid) {
        guard bytes.count < Int32.max else { throw Invalid() }
        self.bytes = bytes
        var tokens: [Token] = []
        tokens.reserveCapacity(bytes.count / 12)
        let checked: Bool = bytes.withUnsafeBufferPointer { buffer in
            var scanner = Scanner(bytes: buffer, tokens: tokens)
            tokens = []
            guard scanner.document() else { return false }
            tokens = scanner.tokens
            return true
        }
        guard checked else { throw Invalid() }
        self.tokens = tokens
    }

    /// The text of string token `index`, unescaped; nil for an escape that names half of a
    /// UTF-16 surrogate pair alone.
    func string(_ index: Int) -> String? {
        let token = tokens[index]
        let raw = bytes[Int(token.start)..<Int(token.end)]
        guard token.escaped else { return String(decoding: raw, as: UTF8.self) }
        return Self.unescape(raw)
    }

    /// The value under key `name` in object token `object`: the first, when the object names it
    /// twice (as `JSONDecoder`); nil when it has no such key.
    func value(in object: Int, named name: String) -> Int? {
        var name = name
        return name.withUTF8 { wanted in
            tokens.withUnsafeBufferPointer { tokens in
                bytes.withUnsafeBufferPointer { bytes in
                    var key = object + 1
                    while key < Int(tokens[object].next) {
                        let token = tokens[key]
                        if token.escaped {
                            if string(key) == String(decoding: wanted, as: UTF8.self) { return key + 1 }
                        } else if Int(token.end - token.start) == wanted.count,
                            wanted.isEmpty || memcmp(bytes.baseAddress! + Int(token.start), wanted.baseAddress!, wanted.count) == 0
                        {
                            return key + 1
                        }
                        key = Int(tokens[key + 1].next)
                    }
                    return nil
                }
            }
        }
    }

    /// The tokens directly in container token `container`, in order: an object's keys (each
    /// followed by its value), an array's elements.
    func members(of container: Int) -> [Int] {
        let valueAfterKey = tokens[container].kind == .object ? 1 : 0
        var members: [Int] = []
        var member = container + 1
        while member < Int(tokens[container].next) {
            members.append(member)
            member = Int(tokens[member + valueAfterKey].next)
        }
        return members
    }

    /// The raw text of scalar token `index` (a number's digits).
    func text(_ index: Int) -> String {
        let token = tokens[index]
        return String(decoding: bytes[Int(token.start)..<Int(token.end)], as: UTF8.self)
    }

    private static func unescape(_ raw: ArraySlice<UInt8>) -> String? {
        var out: [UInt8] = []
        out.reserveCapacity(raw.count)
        var index = raw.startIndex
        var pendingHigh: UInt32?
        func hex(_ at: Int) -> UInt32 {
            (at..<at + 4).reduce(0) { value, position in
                let digit = raw[position]
                let nibble: UInt8 = digit <= 0x39 ? digit - 0x30 : (digit | 0x20) - 0x61 + 10
                return value << 4 | UInt32(nibble)
            }
        }
        while index < raw.endIndex {
            let byte = raw[index]
            guard byte == UInt8(ascii: "\\") else {
                guard pendingHigh == nil else { return nil }
                out.append(byte)
                index += 1
                continue
            }
            let escape = raw[index + 1]
            index += 2
            guard escape == UInt8(ascii: "u") else {
                guard pendingHigh == nil else { return nil }
                switch escape {
                case UInt8(ascii: "b"): out.append(0x08)
                case UInt8(ascii: "f"): out.append(0x0C)
                case UInt8(ascii: "n"): out.append(0x0A)
                case UInt8(ascii: "r"): out.append(0x0D)
                case UInt8(ascii: "t"): out.append(0x09)
                default: out.append(escape)  // " \ /, as the scanner allowed no other
                }
                continue
            }
            let unit = hex(index)
            index += 4
            let scalar: UInt32
            switch (pendingHigh, unit) {
            case (nil, 0xD800...0xDBFF):
                pendingHigh = unit
                continue
            case (let high?, 0xDC00...0xDFFF):
                scalar = 0x10000 + ((high - 0xD800) << 10) + (unit - 0xDC00)
                pendingHigh = nil
            case (nil, 0xDC00...0xDFFF), (.some, _):
                return nil
            default:
                scalar = unit
            }
            out.append(contentsOf: String(Character(Unicode.Scalar(scalar)!)).utf8)
        }
        guard pendingHigh == nil else { return nil }
        return String(decoding: out, as: UTF8.self)
    }
}

/// One pass over the bytes: checks the grammar and records the tokens.
private struct Scanner {
    let bytes: UnsafeBufferPointer<UInt8>
    var tokens: [PayloadJSON.Token]
    var at = 0

    mutating func document() -> Bool {
        if bytes.starts(with: [0xEF, 0xBB, 0xBF]) { at = 3 }
        guard value(depth: 0) else { return false }
        space()
        return at == bytes.count
    }

    private var current: UInt8 { at < bytes.count ? bytes[at] : 0 }

    private mutating func space() {
        while at < bytes.count {
            switch bytes[at] {
            case 0x20, 0x0A, 0x0D, 0x09: at += 1
            default: return
            }
        }
    }

    private mutating func value(depth: Int) -> Bool {
        space()
        switch current {
        case UInt8(ascii: "{"): return depth < PayloadJSON.maxDepth && object(depth: depth + 1)
        case UInt8(ascii: "["): return depth < PayloadJSON.maxDepth && array(depth: depth + 1)
        case UInt8(ascii: "\""): return string()
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return number()
        case UInt8(ascii: "t"): return literal("true", .bool)
        case UInt8(ascii: "f"): return literal("false", .bool)
        case UInt8(ascii: "n"): return literal("null", .null)
        default: return false
        }
    }

    /// Appends a container's token, to be closed once its contents are scanned.
    private mutating func open(_ kind: PayloadJSON.Kind) -> Int {
        tokens.append(PayloadJSON.Token(kind: kind, escaped: false, start: Int32(at), end: 0, next: 0))
        at += 1
        return tokens.count - 1
    }

    private mutating func close(_ index: Int) {
        at += 1
        tokens[index].end = Int32(at)
        tokens[index].next = Int32(tokens.count)
    }

    private mutating func object(depth: Int) -> Bool {
        let index = open(.object)
        space()
        if current == UInt8(ascii: "}") {
            close(index)
            return true
        }
        while true {
            space()
            guard current == UInt8(ascii: "\""), string() else { return false }
            space()
            guard current == UInt8(ascii: ":") else { return false }
            at += 1
            guard value(depth: depth) else { return false }
            space()
            switch current {
            case UInt8(ascii: ","): at += 1
            case UInt8(ascii: "}"):
                close(index)
                return true
            default: return false
            }
        }
    }

    private mutating func array(depth: Int) -> Bool {
        let index = open(.array)
        space()
        if current == UInt8(ascii: "]") {
            close(index)
            return true
        }
        while true {
            guard value(depth: depth) else { return false }
            space()
            switch current {
            case UInt8(ascii: ","): at += 1
            case UInt8(ascii: "]"):
                close(index)
                return true
            default: return false
            }
        }
    }

    private mutating func string() -> Bool {
        at += 1
        let start = at
        var escaped = false
        while at < bytes.count {
            let byte = bytes[at]
            if byte == UInt8(ascii: "\"") {
                tokens.append(
                    PayloadJSON.Token(kind: .string, escaped: escaped, start: Int32(start), end: Int32(at), next: Int32(tokens.count + 1)))
                at += 1
                return true
            }
            if byte == UInt8(ascii: "\\") {
                escaped = true
                guard escape() else { return false }
            } else if byte < 0x20 {
                return false
            } else if byte < 0x80 {
                at += 1
            } else {
                guard utf8() else { return false }
            }
        }
        return false
    }

    /// A backslash escape at `at`; a `\u` needs its four hexadecimal digits.
    private mutating func escape() -> Bool {
        guard at + 1 < bytes.count else { return false }
        switch bytes[at + 1] {
        case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"), UInt8(ascii: "b"), UInt8(ascii: "f"), UInt8(ascii: "n"),
            UInt8(ascii: "r"), UInt8(ascii: "t"):
            at += 2
            return true
        case UInt8(ascii: "u"):
            guard at + 5 < bytes.count else { return false }
            for position in at + 2...at + 5 {
                switch bytes[position] {
                case UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "a")...UInt8(ascii: "f"), UInt8(ascii: "A")...UInt8(ascii: "F"): continue
                default: return false
                }
            }
            at += 6
            return true
        default:
            return false
        }
    }

    /// One multi-byte UTF-8 sequence at `at` (RFC 3629: no overlong forms, no surrogates, at
    /// most U+10FFFF).
    private mutating func utf8() -> Bool {
        let lead = bytes[at]
        let count: Int
        var low: UInt8 = 0x80
        var high: UInt8 = 0xBF
        switch lead {
        case 0xC2...0xDF: count = 1
        case 0xE0: count = 2; low = 0xA0
        case 0xE1...0xEC, 0xEE...0xEF: count = 2
        case 0xED: count = 2; high = 0x9F
        case 0xF0: count = 3; low = 0x90
        case 0xF1...0xF3: count = 3
        case 0xF4: count = 3; high = 0x8F
        default: return false
        }
        guard at + count < bytes.count else { return false }
        for offset in 1...count {
            let byte = bytes[at + offset]
            guard offset == 1 ? (low...high).contains(byte) : (0x80...0xBF).contains(byte) else { return false }
        }
        at += count + 1
        return true
    }

    private mutating func number() -> Bool {
        let start = at
        if current == UInt8(ascii: "-") { at += 1 }
        switch current {
        case UInt8(ascii: "0"): at += 1
        case UInt8(ascii: "1")...UInt8(ascii: "9"): digits()
        default: return false
        }
        if current == UInt8(ascii: ".") {
            at += 1
            guard isDigit else { return false }
            digits()
        }
        if current == UInt8(ascii: "e") || current == UInt8(ascii: "E") {
            at += 1
            if current == UInt8(ascii: "+") || current == UInt8(ascii: "-") { at += 1 }
            guard isDigit else { return false }
            digits()
        }
        tokens.append(PayloadJSON.Token(kind: .number, escaped: false, start: Int32(start), end: Int32(at), next: Int32(tokens.count + 1)))
        return true
    }

    private var isDigit: Bool { (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(current) }

    private mutating func digits() {
        while isDigit { at += 1 }
    }

    private mutating func literal(_ word: StaticString, _ kind: PayloadJSON.Kind) -> Bool {
        let count = word.utf8CodeUnitCount
        guard at + count <= bytes.count, memcmp(bytes.baseAddress! + at, word.utf8Start, count) == 0 else { return false }
        tokens.append(PayloadJSON.Token(kind: kind, escaped: false, start: Int32(at), end: Int32(at + count), next: Int32(tokens.count + 1)))
        at += count
        return true
    }
}
