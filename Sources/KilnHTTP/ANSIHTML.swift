/// Terminal colours in build output, rendered as HTML spans (everything else escaped).
enum ANSIHTML {
    private static let colours = ["#000", "#e05252", "#4fb04f", "#d6b43a", "#5b8def", "#c678dd", "#3fb5c5", "#ddd"]

    /// `text` as HTML: SGR colour and bold sequences become spans, other escapes are dropped.
    static func render(_ text: String) -> String {
        var html = ""
        var open = false
        var scalars = text.unicodeScalars[...]
        while let scalar = scalars.popFirst() {
            guard scalar == "\u{1B}" else {
                html += Pages.escape(String(scalar))
                continue
            }
            guard scalars.first == "[" else { continue }
            scalars.removeFirst()
            var parameters = ""
            var final: Unicode.Scalar?
            while let next = scalars.popFirst() {
                if (0x40...0x7E).contains(next.value) {
                    final = next
                    break
                }
                parameters.unicodeScalars.append(next)
            }
            guard final == "m" else { continue }
            if open {
                html += "</span>"
                open = false
            }
            var style: [String] = []
            for code in parameters.split(separator: ";").compactMap({ Int($0) }) {
                switch code {
                case 1: style.append("font-weight:bold")
                case 30...37: style.append("color:\(colours[code - 30])")
                case 90...97: style.append("color:\(colours[code - 90])")
                default: break
                }
            }
            if !style.isEmpty {
                html += "<span style=\"\(style.joined(separator: ";"))\">"
                open = true
            }
        }
        if open { html += "</span>" }
        return html
    }
}
