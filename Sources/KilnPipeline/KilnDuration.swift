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
