import Foundation
import KilnCore

/// What the build service asks of nix before it accepts a request.
extension NixExecutor {
    /// Why `expression` does not parse (`expression:LINE:COLUMN: message`), or nil when it does.
    /// Only parsed, never evaluated.
    public func expressionProblem(_ expression: String) async -> String? {
        let binaries: NixBinaries
        switch NixBinaries.resolve(settings.binary) {
        case .failure(let error): return error.message
        case .success(let found): binaries = found
        }
        let directory = scratchDirectory + "/kiln-parse-" + UUID().uuidString.lowercased()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let file = directory + "/expression.nix"
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            try Data(expression.utf8).write(to: URL(fileURLWithPath: file))
            _ = try await NixBinaries.capture(binaries.nixInstantiate, ["--parse", file, "-I", directory] + optionArguments)
            return nil
        } catch {
            let text = ANSI.strip("\(error)")
            let message = text.firstMatch(of: /error: ([^\n]*)/).map { String($0.1) } ?? text
            if let place = text.firstMatch(of: /at [^\n]*expression\.nix:(\d+):(\d+)/) {
                return "expression:\(place.1):\(place.2): \(message)"
            }
            return "expression: \(message)"
        }
    }

    /// The arguments the function in `file` takes, each with whether it has a default; nil when
    /// the file is not a function nix can read.
    public func functionArguments(ofFile file: String) async -> [String: Bool]? {
        guard let binaries = try? NixBinaries.resolve(settings.binary).get() else { return nil }
        let directory = (file as NSString).deletingLastPathComponent
        guard
            let text = try? await NixBinaries.capture(
                binaries.nixInstantiate,
                ["--eval", "--json", "--strict", "-E", "{ file }: builtins.functionArgs (import file)", "--argstr", "file", file, "-I", directory]
                    + optionArguments),
            let arguments = try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Bool]
        else { return nil }
        return arguments
    }
}
