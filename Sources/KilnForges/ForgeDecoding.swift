import Foundation
import KilnCore
import KilnPipeline

/// Decoding errors in a sentence.
enum JSONErrors {
    /// Decodes a forge payload, or says which field is missing or wrong.
    static func decode<T: Decodable>(_ type: T.Type, _ body: [UInt8], what: String) throws(WebhookError) -> T {
        do {
            return try PayloadDecoder.decode(type, from: body)
        } catch {
            throw .malformed("\(what) is not what the forge documents: \(describe(error))")
        }
    }

    static func describe(_ error: any Error) -> String {
        switch error {
        case DecodingError.keyNotFound(let key, let context):
            return "missing field '\(path(context.codingPath + [key]))'"
        case DecodingError.typeMismatch(_, let context), DecodingError.valueNotFound(_, let context):
            return "field '\(path(context.codingPath))' has the wrong type"
        case DecodingError.dataCorrupted(let context):
            return context.codingPath.isEmpty ? "body is not valid JSON" : "field '\(path(context.codingPath))' is invalid"
        default:
            return "\(error)"
        }
    }

    private static func path(_ keys: [any CodingKey]) -> String {
        keys.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }.joined(separator: ".")
    }
}

/// Checks that forges' values can be used in Kiln's own URLs and refs.
enum Checked {
    /// A pull request number, as the forges write it.
    static func number(_ value: Int, _ what: String) throws(WebhookError) -> Int {
        guard value > 0 else { throw .malformed("\(what) is not a pull request number: \(value)") }
        return value
    }

    /// A full commit id.
    static func commit(_ value: String, _ what: String) throws(WebhookError) -> String {
        guard CommitID.isValid(value) else { throw .malformed("\(what) is not a commit id: \(value.prefix(80))") }
        return value
    }

    /// The previous commit, or nil when it is all zeros (a new ref) or absent.
    static func before(_ value: String?) -> String? {
        value.flatMap { CommitID.isValid($0) && !CommitID.isZero($0) ? $0 : nil }
    }

    /// A delivery id: present, and short enough to key on.
    static func delivery(_ value: String?, _ header: String) throws(WebhookError) -> String {
        guard let value, !value.isEmpty, value.count <= 200 else { throw .malformed("missing or overlong \(header) header") }
        return value
    }
}
