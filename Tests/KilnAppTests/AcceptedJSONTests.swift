import Foundation
import Testing

@testable import KilnHTTP
import KilnCore

@Suite struct AcceptedJSONTests {
    /// The hand-written answer is the same JSON as JSONEncoder's, whatever the strings hold.
    @Test(arguments: ["http://kiln.test/builds/1", "a \"quoted\" \\ back\nslash\t\u{1}, é and 🔥"])
    func compactJSONMatchesTheEncoder(text: String) throws {
        let accepted = AcceptedJSON(
            build_id: 7, new: true, url: text,
            builds: [.init(build_id: 7, new: true, url: text), .init(build_id: 8, new: false, url: "u")], message: text)
        let handWritten = try JSONSerialization.jsonObject(with: Data(accepted.compactJSON)) as? NSDictionary
        let encoded = try JSONSerialization.jsonObject(with: JSONEncoder().encode(accepted)) as? NSDictionary
        #expect(handWritten != nil && handWritten == encoded)
    }
}
