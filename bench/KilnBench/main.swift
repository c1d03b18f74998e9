// Kiln's timing figures, measured end to end with the real components: `make bench`.
//
// 1. Webhook to first pending status: a signed push is sent to `kiln serve` over a socket;
//    the time until the fake GitHub receives the `kiln` pending status for that commit.
// 2. Job overhead: a trivial fresh derivation built by a Kiln job, against the same kind of
//    derivation built by hand with `nix build` (same sandbox options), in the same run.
import Foundation
import KilnApp
import KilnTesting
import Logging
import ServiceLifecycle

let rounds = Int(ProcessInfo.processInfo.environment["KILN_BENCH_ROUNDS"] ?? "20") ?? 20

func median(_ values: [Double]) -> Double {
    let sorted = values.sorted()
    return sorted.count % 2 == 1 ? sorted[sorted.count / 2] : (sorted[sorted.count / 2 - 1] + sorted[sorted.count / 2]) / 2
}

func milliseconds(_ duration: Duration) -> Double {
    Double(duration.components.seconds) * 1000 + Double(duration.components.attoseconds) / 1e15
}

func format(_ values: [Double]) -> String {
    String(format: "median %.1f ms (min %.1f, max %.1f, n=%d)", median(values), values.min() ?? 0, values.max() ?? 0, values.count)
}

/// Builds `attribute` of the flake in `directory` by hand, as a user would.
func nixBuildByHand(_ directory: String, _ attribute: String) throws -> Duration {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/nix")
    process.arguments = [
        "build", "--extra-experimental-features", "nix-command flakes", "--option", "sandbox", "true",
        "--option", "sandbox-fallback", "false", "--option", "substituters", "", "--no-link", "path:\(directory)#\(attribute)",
    ]
    process.standardOutput = FileHandle.nullDevice
    process.standardError = FileHandle.nullDevice
    let clock = ContinuousClock()
    let start = clock.now
    try process.run()
    process.waitUntilExit()
    guard process.terminationStatus == 0 else { fatalError("nix build by hand exited with \(process.terminationStatus)") }
    return clock.now - start
}

let directory = try TemporaryDirectory("kiln-bench")
defer { directory.remove() }
let repository = try TestGitRepository(at: directory.appending("origin"))
let github = try await FakeGitHub(token: "bench-token", repositories: ["bench/hello"])
try "bench-secret".write(toFile: directory.appending("secret"), atomically: true, encoding: .utf8)
try "bench-token".write(toFile: directory.appending("token"), atomically: true, encoding: .utf8)
try """
    server: {listen: "127.0.0.1:0", public-url: "http://kiln.bench"}
    storage: {data-dir: data}
    nix: {options: {substituters: ""}}
    forges:
      github: {type: github, api-url: "\(github.url)", webhook-secret-files: [secret], token-file: token}
    repositories:
      - {forge: github, name: bench/hello, clone-url: "file://\(repository.path)"}
    """.write(toFile: directory.appending("kiln.yaml"), atomically: true, encoding: .utf8)
try repository.write(".kiln.yml", "jobs:\n  job:\n    build: .#kiln\n")

var logger = Logger(label: "bench")
logger.logLevel = .critical
let configuration = try KilnConfiguration.load(path: directory.appending("kiln.yaml"))
let (ports, portContinuation) = AsyncStream.makeStream(of: Int.self)
let group = try await KilnServer.make(configuration, logger: logger) { port in
    portContinuation.yield(port)
    portContinuation.finish()
}
let server = Task { try await group.run() }
let port = await ports.first { _ in true }!
let clock = ContinuousClock()

var firstPending: [Double] = []
var webhookToFinal: [Double] = []
var jobDurations: [Double] = []
var byHand: [Double] = []
print("kiln bench: \(rounds) rounds, nix \(try NixVersion.read())")
for round in 1...rounds {
    // Fresh derivations each round, so neither side finds its output already built.
    let salt = UUID().uuidString
    try TestFlake(packages: [
        "kiln": TestFlake.succeeding("kiln-\(salt)"), "hand": TestFlake.succeeding("hand-\(salt)"),
    ]).write(to: repository.path)
    let sha = try repository.commit("round \(round)")
    byHand.append(milliseconds(try nixBuildByHand(repository.path, "hand")))

    let body = Array("""
        {"ref":"refs/heads/main","after":"\(sha)","deleted":false,"repository":{"full_name":"bench/hello"}}
        """.utf8)
    let sent = clock.now
    let answer = try await HTTPTestClient.send(
        "POST", "http://127.0.0.1:\(port)/webhooks/github",
        headers: WebhookSigner.githubHeaders(event: "push", body: body, secret: "bench-secret"), body: body)
    guard answer.status == 202 else { fatalError("webhook answered \(answer.status): \(answer.body)") }
    let final = try await eventually("round \(round) to finish", within: .seconds(120), every: .milliseconds(1)) {
        github.statuses.first { $0.sha == sha && $0.context == "kiln" && $0.state != "pending" }
    }
    guard let pending = github.statuses.first(where: { $0.sha == sha && $0.context == "kiln" && $0.state == "pending" }) else {
        fatalError("no pending status for round \(round)")
    }
    firstPending.append(milliseconds(pending.receivedAt - sent))
    webhookToFinal.append(milliseconds(final.receivedAt - sent))
    let build = try await HTTPTestClient.send("GET", "http://127.0.0.1:\(port)/api/v1/builds/\(answer.json["build_id"] as! Int)").json
    let job = (build["jobs"] as! [[String: Any]])[0]
    jobDurations.append((job["duration_seconds"] as! Double) * 1000)
}
await group.triggerGracefulShutdown()
_ = try? await server.value
await github.stop()

print("webhook arrival → first pending status at the forge: \(format(firstPending))")
print("webhook arrival → final status at the forge:         \(format(webhookToFinal))")
print("Kiln job (evaluate + realise, as recorded):          \(format(jobDurations))")
print("nix build by hand, same options:                     \(format(byHand))")
print(String(format: "overhead ratio, Kiln job / nix build by hand:  %.2f (medians)", median(jobDurations) / median(byHand)))
print(String(format: "overhead ratio, webhook→final / nix build by hand: %.2f (medians)", median(webhookToFinal) / median(byHand)))

enum NixVersion {
    static func read() throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/nix")
        process.arguments = ["--version"]
        let pipe = Pipe()
        process.standardOutput = pipe
        try process.run()
        process.waitUntilExit()
        return String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            .trimmingCharacters(in: .whitespacesAndNewlines)
    }
}
