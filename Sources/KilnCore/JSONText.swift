/// JSON written by hand, for what is written on every delivery (JSONSerialization and
/// JSONEncoder were a noticeable share of intake's time).
public enum JSONText {
    /// A JSON string literal.
    public static func quoted(_ text: String) -> String {
        // Most strings (URLs, refs, fixed messages) need no escaping at all.
        if !text.utf8.contains(where: { $0 == 0x22 || $0 == 0x5C || $0 < 0x20 }) { return "\"" + text + "\"" }
        var out = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where scalar.value < 0x20:
                let hex = String(scalar.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out + "\""
    }
}
