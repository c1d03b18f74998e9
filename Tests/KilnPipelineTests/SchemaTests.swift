import Foundation
import Testing

/// `config/kiln.schema.json` agrees with the parser on every file in `Cases/`: valid files
/// validate, invalid ones do not (except problems a schema cannot see, marked `# schema: accepts`).
@Suite struct SchemaTests {
    static let schema = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("config/kiln.schema.json").path

    static func validate(_ cases: [PipelineCase], kind: String) throws -> [String: String] {
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("check_schema.py").path
        let files = cases.map { PipelineCase.directory.appendingPathComponent("\(kind)/\($0.name).yml").path }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", script, schema] + files
        let output = Pipe()
        let errors = Pipe()
        process.standardOutput = output
        process.standardError = errors
        try process.run()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        let errorText = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        guard process.terminationStatus == 0, let results = try JSONSerialization.jsonObject(with: data) as? [String: String] else {
            throw SchemaCheckFailed(message: "python3 check_schema.py failed (needs: pip install jsonschema pyyaml): \(errorText)")
        }
        return Dictionary(uniqueKeysWithValues: results.map { (URL(fileURLWithPath: $0.key).deletingPathExtension().lastPathComponent, $0.value) })
    }

    struct SchemaCheckFailed: Error, CustomStringConvertible {
        var message: String
        var description: String { message }
    }

    @Test func validFilesValidate() throws {
        let results = try Self.validate(PipelineCase.valid, kind: "valid")
        #expect(results.count == PipelineCase.valid.count)
        for (name, result) in results.sorted(by: { $0.key < $1.key }) {
            #expect(result == "valid", "valid/\(name): \(result)")
        }
    }

    @Test func invalidFilesDoNot() throws {
        let checked = PipelineCase.invalid.filter { !$0.schemaAccepts }
        let results = try Self.validate(checked, kind: "invalid")
        #expect(results.count == checked.count)
        for (name, result) in results.sorted(by: { $0.key < $1.key }) {
            #expect(result != "valid", "invalid/\(name) passes the schema")
        }
    }

    @Test func problemsOnlyTheParserSeesAreMarked() throws {
        let marked = PipelineCase.invalid.filter(\.schemaAccepts)
        let results = try Self.validate(marked, kind: "invalid")
        for (name, result) in results.sorted(by: { $0.key < $1.key }) {
            #expect(result == "valid", "invalid/\(name) is marked '# schema: accepts' but the schema refuses it: \(result)")
        }
    }
}
