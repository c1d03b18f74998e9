import Foundation

// The small value types every target shares: git refs, commit ids, byte counts, durations.

/// A git ref as pushed: a branch or a tag.
public enum GitRef: Sendable, Hashable, CustomStringConvertible {
    /// `refs/heads/<name>`.
    case branch(String)
    /// `refs/tags/<name>`.
    case tag(String)

    /// Parses a full ref name; nil for anything that is not a branch or tag.
    public init?(fullName: String) {
        if fullName.hasPrefix("refs/heads/"), fullName.count > 11 {
            self = .branch(String(fullName.dropFirst(11)))
        } else if fullName.hasPrefix("refs/tags/"), fullName.count > 10 {
            self = .tag(String(fullName.dropFirst(10)))
        } else {
            return nil
        }
    }

    /// The full ref name, `refs/heads/main`.
    public var fullName: String {
        switch self {
        case .branch(let name): return "refs/heads/\(name)"
        case .tag(let name): return "refs/tags/\(name)"
        }
    }

    /// The short name, `main`.
    public var shortName: String {
        switch self {
        case .branch(let name), .tag(let name): return name
        }
    }

    public var description: String {
        switch self {
        case .branch(let name): return "branch '\(name)'"
        case .tag(let name): return "tag '\(name)'"
        }
    }
}

/// Commit ids are hex strings of 40 (SHA-1) or 64 (SHA-256) characters.
public enum CommitID {
    /// Whether `text` is a lowercase hex commit id prefix of at least 7 characters (Bitbucket
    /// Cloud sends 12), or a full id.
    public static func isPrefix(_ text: String) -> Bool {
        (7...64).contains(text.utf8.count)
            && text.utf8.allSatisfy { (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) || (UInt8(ascii: "a")...UInt8(ascii: "f")).contains($0) }
    }

    /// Whether `text` is a full, lowercase commit id.
    public static func isValid(_ text: String) -> Bool {
        (text.utf8.count == 40 || text.utf8.count == 64)
            && text.utf8.allSatisfy { (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) || (UInt8(ascii: "a")...UInt8(ascii: "f")).contains($0) }
    }

    /// Whether `text` is all zeros, which forges use for "no commit" (ref created or deleted).
    public static func isZero(_ text: String) -> Bool {
        !text.isEmpty && text.utf8.allSatisfy { $0 == UInt8(ascii: "0") }
    }

    /// The first 7 characters, for messages.
    public static func short(_ sha: String) -> String { String(sha.prefix(7)) }
}

/// Byte counts for messages (`2.1 MiB`, `256 KiB`, `812 bytes`) and in files (`512MiB`, `4G`).
public enum ByteCount {
    /// Parses `4GiB`, `4G`, `4GB` (all 4 × 1024³), `512MiB`, `64KiB` or plain bytes; nil otherwise.
    public static func parse(_ text: String) -> Int? {
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        let digits = trimmed.prefix { $0.isASCII && $0.isNumber }
        guard !digits.isEmpty, let number = Int(digits), number > 0 else { return nil }
        let unit = trimmed.dropFirst(digits.count).trimmingCharacters(in: .whitespaces).uppercased()
        let shifts: [String: Int] = [
            "": 0, "B": 0, "K": 10, "KB": 10, "KIB": 10, "M": 20, "MB": 20, "MIB": 20, "G": 30, "GB": 30, "GIB": 30,
            "T": 40, "TB": 40, "TIB": 40,
        ]
        guard let shift = shifts[unit] else { return nil }
        let (value, overflow) = number.multipliedReportingOverflow(by: 1 << shift)
        return overflow ? nil : value
    }

    /// Formats a byte count with a binary unit.
    public static func format(_ count: Int) -> String {
        if count < 1024 { return "\(count) bytes" }
        let units = ["KiB", "MiB", "GiB"]
        var value = Double(count) / 1024
        var unit = 0
        while value >= 1024, unit < units.count - 1 {
            value /= 1024
            unit += 1
        }
        let rounded = (value * 10).rounded() / 10
        let text = rounded == rounded.rounded() ? String(Int(rounded)) : String(rounded)
        return "\(text) \(units[unit])"
    }
}

/// Durations as written in Kiln's files: `30s`, `5m`, `1h`, `1h30m`, `2h15m10s`.
///
/// Units must appear in the order h, m, s, each at most once, with a
/// positive total. Anything else is rejected rather than guessed at.
public enum KilnDuration {
    /// Parses `text`; returns nil when it is not a valid duration. Days (`30d`) only when
    /// `allowDays` (retention periods); pipeline limits stay in hours at most.
    public static func parse(_ text: String, allowDays: Bool = false) -> Duration? {
        var seconds: Int64 = 0
        var number: Int64?
        var lastUnitRank = -2
        var sawUnit = false
        for scalar in text.unicodeScalars {
            if ("0"..."9").contains(scalar) {
                let digit = Int64(scalar.value - 48)
                let (multiplied, overflow) = (number ?? 0).multipliedReportingOverflow(by: 10)
                guard !overflow, multiplied <= 10_000_000 else { return nil }
                number = multiplied + digit
                continue
            }
            let rank: Int
            let factor: Int64
            switch scalar {
            case "d" where allowDays: (rank, factor) = (-1, 86400)
            case "h": (rank, factor) = (0, 3600)
            case "m": (rank, factor) = (1, 60)
            case "s": (rank, factor) = (2, 1)
            default: return nil
            }
            guard let value = number, rank > lastUnitRank else { return nil }
            seconds += value * factor
            lastUnitRank = rank
            number = nil
            sawUnit = true
        }
        guard sawUnit, number == nil, seconds > 0 else { return nil }
        return .seconds(seconds)
    }

    /// Formats a duration the way it is written: `1h30m`, `45s`, `20m`.
    /// Fractions of a second are rounded down; below one second, `0s`.
    public static func format(_ duration: Duration) -> String {
        var remaining = duration.components.seconds
        guard remaining > 0 else { return "0s" }
        var text = ""
        for (unit, size) in [("h", Int64(3600)), ("m", 60), ("s", 1)] where remaining >= size {
            text += "\(remaining / size)\(unit)"
            remaining %= size
        }
        return text
    }
}

/// Durations for people: `850 ms`, `41 s`, `2m 05s`, `1h 02m`.
public enum HumanDuration {
    /// Formats a duration compactly.
    public static func format(_ duration: Duration) -> String {
        let (seconds, attoseconds) = duration.components
        if seconds < 1 { return "\(attoseconds / 1_000_000_000_000_000) ms" }
        if seconds < 60 { return "\(seconds) s" }
        if seconds < 3600 { return String(format: "%dm %02ds", seconds / 60, seconds % 60) }
        return String(format: "%dh %02dm", seconds / 3600, (seconds % 3600) / 60)
    }
}
