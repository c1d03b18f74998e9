/// Terminal colours in build output, rendered as HTML spans with classes (everything else
/// escaped). Colour state carries from line to line; an escape sequence cut off at the end of the
/// text is held back, not shown.
struct ANSIHTML {
    /// The classes in effect: `a1`…`a7` colours (`a0` black), `ab` bold.
    private var classes: [String] = []

    /// A renderer with no colour in effect.
    init() {}

    /// `text` as HTML in one go.
    static func render(_ text: String) -> String {
        var renderer = ANSIHTML()
        return renderer.render(text)
    }

    /// Renders the next piece of text; an open colour is closed at its end and reopened at the
    /// start of the next piece, so that each piece (a line) is well-formed HTML on its own.
    mutating func render(_ text: String) -> String {
        var html = classes.isEmpty ? "" : "<span class=\"\(classes.joined(separator: " "))\">"
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
            // Cut off, or not a colour: shown as nothing.
            guard final == "m" else { continue }
            if !classes.isEmpty { html += "</span>" }
            classes = Self.classes(parameters, after: classes)
            if !classes.isEmpty { html += "<span class=\"\(classes.joined(separator: " "))\">" }
        }
        if !classes.isEmpty { html += "</span>" }
        return html
    }

    /// The classes after an SGR sequence with `parameters`.
    static func classes(_ parameters: String, after current: [String]) -> [String] {
        var bold = current.contains("ab")
        var colour = current.first { $0 != "ab" }
        let codes = parameters.isEmpty ? [0] : parameters.split(separator: ";", omittingEmptySubsequences: false).map { Int($0) ?? 0 }
        for code in codes {
            switch code {
            case 0: (bold, colour) = (false, nil)
            case 1: bold = true
            case 22: bold = false
            case 30...37: colour = "a\(code - 30)"
            case 90...97: colour = "a\(code - 90)"
            case 39: colour = nil
            default: break
            }
        }
        return (colour.map { [$0] } ?? []) + (bold ? ["ab"] : [])
    }
}
