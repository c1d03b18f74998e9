import Foundation
import KilnTesting
import Testing

@testable import KilnForges

/// Forge payloads are read by `PayloadDecoder`; it must accept and read exactly what
/// `JSONDecoder` does.
@Suite struct PayloadDecoderTests {
    /// Both decoders' results for `bytes`: equal values, or both an error.
    private func agree<T: Decodable & Equatable>(_ type: T.Type, _ bytes: [UInt8]) -> (mine: T?, theirs: T?) {
        (try? PayloadDecoder.decode(type, from: bytes), try? JSONDecoder().decode(type, from: Data(bytes)))
    }

    @Test func everyFixtureReadsAlike() throws {
        let root = Fixtures.directory
        let files = try #require(FileManager.default.enumerator(atPath: root)).compactMap { $0 as? String }
            .filter { $0.hasSuffix(".json") && !$0.hasSuffix(".headers.json") }
        #expect(files.count > 50)
        for file in files {
            let bytes = try Fixtures.body(file)
            let (mine, theirs) = agree(JSONValue.self, bytes)
            #expect(mine != nil && mine == theirs, "\(file)")
        }
    }

    static let malformed: [String] = [
        "", " ", "{", "}", "[", "]", "[1 2]", #"{"a" 1}"#, "{1:2}", #"{"a":}"#, #"{,"a":1}"#, "[,1]",
        "01", "-01", "1.", ".5", "-", "+1", "1e", "1e+", "0x10", "NaN", "Infinity", "tru", "nul", "falsey", "True",
        #""\x""#, #""\u12G4""#, #""\u123""#, "\"a\nb\"", "\"a\u{7}b\"", #""abc"#, "[] []", "{} x", #"'a'"#, "[1]]", "{}}",
    ]

    @Test(arguments: malformed) func malformedJSONIsRefusedByBoth(_ text: String) {
        let (mine, theirs) = agree(JSONValue.self, Array(text.utf8))
        #expect(mine == nil && theirs == nil)
    }

    /// The differences: JSONDecoder takes a trailing comma, and bytes that are not UTF-8 in a
    /// string it does not read (here the second of two equal keys, found by `make fuzz`); RFC
    /// 8259 does not, nor do forges write either.
    @Test(arguments: [Array("[1,]".utf8), Array(#"{"a":1,}"#.utf8), Array(#"{"url":"a","url":"b"#.utf8) + [0xFF, 0x22, 0x7D]])
    func whatOnlyJSONDecoderTakesIsRefused(_ bytes: [UInt8]) {
        let (mine, theirs) = agree(JSONValue.self, bytes)
        #expect(mine == nil && theirs != nil)
    }

    static let malformedBytes: [[UInt8]] = [
        [0x22, 0xFF, 0x22],  // not UTF-8
        [0x22, 0xC0, 0xAF, 0x22],  // overlong
        [0x22, 0xED, 0xA0, 0x80, 0x22],  // a surrogate, in UTF-8
        [0x22, 0xE2, 0x82, 0x22],  // cut short
        [0x22, 0xF4, 0x90, 0x80, 0x80, 0x22],  // above U+10FFFF
        Array(String(repeating: "[", count: 600).utf8) + Array(String(repeating: "]", count: 600).utf8),
    ]

    @Test(arguments: malformedBytes) func malformedBytesAreRefusedByBoth(_ bytes: [UInt8]) {
        let (mine, theirs) = agree(JSONValue.self, bytes)
        #expect(mine == nil && theirs == nil)
    }

    static let edges: [String] = [
        #""\ud83d\ude00 \u00e9 \/ \" \\ \b\f\n\r\t""#, "\"é 😀 \u{10FFFF}\"", #"{"a":1,"a":2}"#, #"{"a\u0062":1}"#, "-0", "1E+2", "-1.5e-3",
        "123456789012345678901234567890", "  [ 1 , { } , [ ] , null , true , false ]  ", #"{"":""}"#,
        String(repeating: "[", count: 500) + String(repeating: "]", count: 500), "\u{FEFF}[1]",
    ]

    @Test(arguments: edges) func edgesReadAlike(_ text: String) {
        let (mine, theirs) = agree(JSONValue.self, Array(text.utf8))
        #expect(mine != nil && mine == theirs)
    }

    @Test func aLoneSurrogateEscapeIsRefusedWhenRead() {
        for text in [#""\ud83d""#, #""\ude00""#, #""\ud83d\u0041""#] {
            let (mine, theirs) = agree(String.self, Array(text.utf8))
            #expect(mine == nil && theirs == nil, "\(text)")
        }
    }

    @Test(arguments: ["1", "-7", "1.0", "1e2", "1.5", "1e400", "9223372036854775807", "9223372036854775808", "-9223372036854775809"])
    func integersReadAlike(_ text: String) {
        let (mine, theirs) = agree(Int.self, Array(text.utf8))
        #expect(mine == theirs, "\(text)")
    }

    /// What `JSONErrors` makes of each failure stays as `JSONDecoder`'s.
    @Test func errorsNameTheFieldAsBefore() {
        struct Payload: Decodable, Equatable {
            struct Inner: Decodable, Equatable { var id: Int }
            var name: String
            var inner: Inner
            var list: [Inner]?
        }
        let cases: [(String, String)] = [
            (#"{"inner":{"id":1}}"#, "missing field 'name'"),
            (#"{"name":1,"inner":{"id":1}}"#, "field 'name' has the wrong type"),
            (#"{"name":null,"inner":{"id":1}}"#, "field 'name' has the wrong type"),
            (#"{"name":"a","inner":{"id":"x"}}"#, "field 'inner.id' has the wrong type"),
            (#"{"name":"a","inner":{"id":1},"list":[{"id":1},{}]}"#, "missing field 'list.[1].id'"),
            ("[", "body is not valid JSON"),
        ]
        for (text, message) in cases {
            let mine = Result { try PayloadDecoder.decode(Payload.self, from: Array(text.utf8)) }
            let theirs = Result { try JSONDecoder().decode(Payload.self, from: Data(text.utf8)) }
            guard case .failure(let error) = mine, case .failure(let expected) = theirs else {
                Issue.record("\(text) was decoded")
                continue
            }
            #expect(JSONErrors.describe(error) == message && JSONErrors.describe(expected) == message, "\(text)")
        }
        // Where JSONDecoder blamed the whole body, the field is named.
        let fraction = Result { try PayloadDecoder.decode(Payload.self, from: Array(#"{"name":"a","inner":{"id":1.5}}"#.utf8)) }
        guard case .failure(let error) = fraction else { return #expect(Bool(false), "1.5 was read as an Int") }
        #expect(JSONErrors.describe(error) == "field 'inner.id' is invalid")
    }
}
