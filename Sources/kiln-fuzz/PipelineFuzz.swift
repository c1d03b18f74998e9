// libFuzzer targets for everything Kiln parses from outside: the pipeline file, the server
// configuration, every forge's webhook decoder, and the JSON reader under them (`json`, held to
// JSONDecoder). Any bytes must give a result (a value or
// an error that says why) without crashing, hanging or blowing up memory. `make fuzz` runs
// each target (KILN_FUZZ_TARGET) for FUZZ_SECONDS from its own corpus.
import Crypto
import Foundation
import KilnApp
import KilnCore
import KilnPipeline

@testable import KilnForges

/// The targets, by name.
enum FuzzTarget: String, CaseIterable {
    case pipeline, config, json, github, gitlab, bitbucketCloud = "bitbucket-cloud", bitbucketServer = "bitbucket-server", gitea

    static let current = FuzzTarget(rawValue: ProcessInfo.processInfo.environment["KILN_FUZZ_TARGET"] ?? "pipeline") ?? .pipeline
}

/// The webhook secret the fuzz inputs are signed with, so that decoding is reached.
let secret = Secret("fuzz-secret")

/// One input for the current target.
func fuzzOne(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = data.map { Array(UnsafeBufferPointer(start: $0, count: size)) } ?? []
    switch FuzzTarget.current {
    case .pipeline:
        switch PipelineFile.parse(bytes) {
        case .valid(let spec):
            _ = BuildPlan.make(spec, for: .push(.branch("main")), limits: .standard)
        case .invalid(let diagnostics):
            precondition(!diagnostics.isEmpty, "an invalid file must say why")
        }
    case .config:
        do {
            _ = try KilnConfiguration.parse(bytes, file: "fuzz.yaml", directory: "/nonexistent", environment: [:])
        } catch {
            precondition(!error.problems.isEmpty, "an invalid configuration must say why")
        }
    case .json:
        // PayloadDecoder takes nothing JSONDecoder refuses and reads what it takes the same. It
        // may refuse more: JSONDecoder lets through trailing commas and whatever is in strings it
        // never reads (a repeated key's later value), which PayloadJSON checks as RFC 8259 says.
        let mine = try? PayloadDecoder.decode(JSONValue.self, from: bytes)
        let theirs = try? JSONDecoder().decode(JSONValue.self, from: Data(bytes))
        precondition(mine == nil || mine == theirs, "PayloadDecoder read \(String(describing: mine)), JSONDecoder \(String(describing: theirs))")
    case .github, .gitlab, .bitbucketCloud, .bitbucketServer, .gitea:
        // Every event the forge's decoder takes, each with the input as a correctly signed body.
        for (forge, headers) in deliveries(FuzzTarget.current, bytes) {
            switch Result(catching: { () throws(WebhookError) in try forge.receive(WebhookDelivery(headers: headers, body: bytes)) }) {
            case .success, .failure: break
            }
        }
    }
    return 0
}

/// The target's adapter, and one set of signed headers per event it decodes.
func deliveries(_ target: FuzzTarget, _ body: [UInt8]) -> [(any Forge, [(name: String, value: String)])] {
    let mac = HMAC<SHA256>.authenticationCode(for: body, using: SymmetricKey(data: secret.bytes)).map { String(format: "%02x", $0) }.joined()
    let json: (name: String, value: String) = ("Content-Type", "application/json")
    switch target {
    case .github:
        let forge = GitHubForge(settings: .init(apiURL: "http://127.0.0.1:1", webhookSecrets: [secret], token: nil))
        return ["push", "pull_request", "check_run", "check_suite", "ping"].map { event in
            (forge, [json, ("X-GitHub-Event", event), ("X-GitHub-Delivery", "d"), ("X-Hub-Signature-256", "sha256=" + mac)])
        }
    case .gitlab:
        let forge = GitLabForge(settings: .init(url: "http://127.0.0.1:1", webhookSecrets: [secret], token: nil))
        return ["Push Hook", "Tag Push Hook", "Merge Request Hook"].map { event in
            (forge, [json, ("X-Gitlab-Event", event), ("X-Gitlab-Event-UUID", "d"), ("X-Gitlab-Token", secret.value)])
        }
    case .bitbucketCloud:
        let forge = BitbucketCloudForge(settings: .init(apiURL: "http://127.0.0.1:1", webhookSecrets: [secret], token: nil))
        return ["repo:push", "pullrequest:created", "pullrequest:updated", "pullrequest:fulfilled", "pullrequest:rejected"].map { event in
            (forge, [json, ("X-Event-Key", event), ("X-Request-UUID", "d"), ("X-Hub-Signature", "sha256=" + mac)])
        }
    case .bitbucketServer:
        let forge = BitbucketServerForge(settings: .init(url: "http://127.0.0.1:1", webhookSecrets: [secret], token: nil))
        return ["repo:refs_changed", "pr:opened", "pr:from_ref_updated", "pr:merged", "pr:declined", "diagnostics:ping"].map { event in
            (forge, [json, ("X-Event-Key", event), ("X-Request-Id", "d"), ("X-Hub-Signature", "sha256=" + mac)])
        }
    case .gitea:
        let forge = GiteaForge(settings: .init(url: "http://127.0.0.1:1", webhookSecrets: [secret], token: nil))
        return ["push", "pull_request", "create", "delete"].map { event in
            (forge, [json, ("X-Gitea-Event", event), ("X-Gitea-Delivery", "d"), ("X-Gitea-Signature", mac)])
        }
    case .pipeline, .config, .json:
        return []
    }
}

#if KILN_FUZZ
    /// libFuzzer's entry point for one input.
    @_cdecl("LLVMFuzzerTestOneInput")
    public func LLVMFuzzerTestOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt { fuzzOne(data, size) }

    @_silgen_name("LLVMFuzzerRunDriver")
    func LLVMFuzzerRunDriver(
        _ argc: UnsafeMutablePointer<CInt>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
        _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt
    ) -> CInt

    /// SwiftPM links an executable's `main` to `<module>_main`; hand the run to libFuzzer.
    @_cdecl("kiln_fuzz_main")
    func fuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
        var count = argc
        var arguments = argv
        return LLVMFuzzerRunDriver(&count, &arguments) { data, size in fuzzOne(data, size) }
    }
#else
    @main
    enum FuzzHelp {
        /// Without the fuzzer: runs each file named on the command line through the target once
        /// (to replay a crash: `KILN_FUZZ_TARGET=github .build/debug/kiln-fuzz crash-…`).
        static func main() {
            let files = CommandLine.arguments.dropFirst()
            guard !files.isEmpty else {
                print("kiln-fuzz is a libFuzzer target; run it with `make fuzz`, or give it files to replay with KILN_FUZZ_TARGET set.")
                return
            }
            for file in files {
                let bytes = [UInt8](FileManager.default.contents(atPath: file) ?? Data())
                _ = bytes.withUnsafeBufferPointer { fuzzOne($0.baseAddress, $0.count) }
                print("\(file): no crash")
            }
        }
    }
#endif
