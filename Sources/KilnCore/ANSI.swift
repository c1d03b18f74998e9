/// Terminal escape sequences in build output.
public enum ANSI {
    /// `text` without escape sequences (colours, cursor movement).
    public static func strip(_ text: String) -> String {
        guard text.contains("\u{1B}") else { return text }
        var result = ""
        var escaping = false
        for scalar in text.unicodeScalars {
            if escaping {
                // A CSI sequence ends at a final byte 0x40–0x7E; '[' only opens it.
                if (0x40...0x7E).contains(scalar.value) && scalar != "[" { escaping = false }
                continue
            }
            if scalar == "\u{1B}" {
                escaping = true
                continue
            }
            result.unicodeScalars.append(scalar)
        }
        return result
    }
}
