/// Nix string literals, for expressions Kiln writes.
public enum NixString {
    /// A nix string literal holding `text` exactly: `\`, `"` and `$` (so `${` starts no
    /// interpolation) escaped, newlines as `\n`.
    public static func literal(_ text: String) -> String {
        var escaped = "\""
        for character in text {
            switch character {
            case "\\": escaped += "\\\\"
            case "\"": escaped += "\\\""
            case "$": escaped += "\\$"
            case "\n": escaped += "\\n"
            default: escaped.append(character)
            }
        }
        return escaped + "\""
    }
}
