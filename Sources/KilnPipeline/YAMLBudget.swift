import CYaml

/// Limits that a pipeline file's YAML must respect before it is composed.
///
/// The check walks libyaml's event stream and counts nodes *as they would be
/// after alias expansion*, so a "billion laughs" file is refused after a few
/// hundred events, long before anything is built in memory.
struct YAMLBudget {
    /// Most nodes the document may expand to.
    var maxNodes = 20_000
    /// Deepest nesting of sequences and mappings.
    var maxDepth = 32

    /// Returns the first problem, or nil when the document is within budget.
    /// YAML syntax errors are reported here too, with libyaml's position.
    func check(_ bytes: [UInt8]) -> Diagnostic? {
        var parser = yaml_parser_t()
        guard yaml_parser_initialize(&parser) == 1 else {
            return Diagnostic(line: 1, column: 1, message: "could not start the YAML parser", code: .syntax)
        }
        defer { yaml_parser_delete(&parser) }
        return bytes.withUnsafeBufferPointer { buffer in
            yaml_parser_set_input_string(&parser, buffer.baseAddress, buffer.count)
            return walk(&parser)
        }
    }

    private struct Frame {
        var anchor: String?
        var size = 1
    }

    private func walk(_ parser: inout yaml_parser_t) -> Diagnostic? {
        var anchorSizes: [String: Int] = [:]
        var frames: [Frame] = []
        var total = 0
        while true {
            var event = yaml_event_t()
            guard yaml_parser_parse(&parser, &event) == 1 else {
                let mark = parser.problem_mark
                let problem = parser.problem.map { String(cString: $0) } ?? "invalid YAML"
                return Diagnostic(
                    line: mark.line + 1, column: mark.column + 1, message: "YAML syntax error: \(problem)",
                    code: .syntax)
            }
            defer { yaml_event_delete(&event) }
            let line = event.start_mark.line + 1
            let column = event.start_mark.column + 1
            var added = 0
            switch event.type {
            case YAML_STREAM_END_EVENT:
                return nil
            case YAML_SCALAR_EVENT:
                added = 1
                if let anchor = Self.string(event.data.scalar.anchor) { anchorSizes[anchor] = 1 }
            case YAML_ALIAS_EVENT:
                let name = Self.string(event.data.alias.anchor) ?? ""
                added = anchorSizes[name] ?? 1
            case YAML_SEQUENCE_START_EVENT, YAML_MAPPING_START_EVENT:
                let anchor =
                    event.type == YAML_SEQUENCE_START_EVENT
                    ? Self.string(event.data.sequence_start.anchor) : Self.string(event.data.mapping_start.anchor)
                frames.append(Frame(anchor: anchor))
                total += 1
                if frames.count > maxDepth {
                    return Diagnostic(
                        line: line, column: column,
                        message: "pipeline file nests deeper than \(maxDepth) levels; flatten it",
                        code: .budget)
                }
            case YAML_SEQUENCE_END_EVENT, YAML_MAPPING_END_EVENT:
                guard let frame = frames.popLast() else { break }
                if let anchor = frame.anchor { anchorSizes[anchor] = frame.size }
                if !frames.isEmpty { frames[frames.count - 1].size += frame.size }
            default:
                break
            }
            if added > 0 {
                total += added
                if !frames.isEmpty { frames[frames.count - 1].size += added }
            }
            if total > maxNodes {
                return Diagnostic(
                    line: line, column: column,
                    message:
                        "pipeline file expands to more than \(maxNodes) YAML nodes (aliases counted as copies); write it out without deep aliases",
                    code: .budget)
            }
        }
    }

    private static func string(_ pointer: UnsafeMutablePointer<yaml_char_t>?) -> String? {
        pointer.map { String(cString: UnsafeRawPointer($0).assumingMemoryBound(to: CChar.self)) }
    }
}
