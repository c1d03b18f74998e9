/// A branch or tag pattern from a pipeline file.
///
/// `*` matches any run of characters except `/`, `**` matches across `/`, `**/` matches
/// zero or more whole directories (so `**/*.nix` matches `a.nix` and `x/y/a.nix`), `?`
/// matches one character other than `/`. Everything else is literal.
public struct Glob: Sendable, Hashable, CustomStringConvertible {
    /// The pattern as written.
    public let pattern: String
    private let tokens: [Token]

    private enum Token: Hashable {
        case literal(Character)
        case any  // ?
        case segment  // *
        case deep  // **
        case directories  // **/
    }

    /// Compiles a pattern. Every string is a valid pattern.
    public init(_ pattern: String) {
        self.pattern = pattern
        var tokens: [Token] = []
        var characters = Array(pattern)[...]
        while let character = characters.popFirst() {
            switch character {
            case "*":
                if characters.first == "*" {
                    characters.removeFirst()
                    if characters.first == "/" {
                        characters.removeFirst()
                        tokens.append(.directories)
                    } else {
                        tokens.append(.deep)
                    }
                } else {
                    tokens.append(.segment)
                }
            case "?": tokens.append(.any)
            default: tokens.append(.literal(character))
            }
        }
        self.tokens = tokens
    }

    public var description: String { pattern }

    /// Whether `name` (a branch or tag name without `refs/...`) matches.
    public func matches(_ name: String) -> Bool {
        let text = Array(name)
        // Dynamic programming over (token, character) positions: linear in
        // tokens × characters, so hostile patterns cannot blow up.
        var reachable = [Bool](repeating: false, count: text.count + 1)
        reachable[0] = true
        for token in tokens {
            var next = [Bool](repeating: false, count: text.count + 1)
            switch token {
            case .literal(let character):
                for index in 0..<text.count where reachable[index] && text[index] == character {
                    next[index + 1] = true
                }
            case .any:
                for index in 0..<text.count where reachable[index] && text[index] != "/" {
                    next[index + 1] = true
                }
            case .directories:
                // Nothing, or any run that ends with "/".
                var reachedBefore = false
                for index in 0...text.count {
                    if reachable[index] { next[index] = true }
                    if index > 0, text[index - 1] == "/", reachedBefore { next[index] = true }
                    if reachable[index] { reachedBefore = true }
                }
            case .segment, .deep:
                var carrying = false
                for index in 0...text.count {
                    if reachable[index] { carrying = true }
                    next[index] = carrying
                    if index < text.count, token == .segment, text[index] == "/" { carrying = false }
                }
            }
            reachable = next
        }
        return reachable[text.count]
    }
}
