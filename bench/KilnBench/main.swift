// Kiln's timing figures, measured with the real components: `make bench`.
//
//   kiln-bench [server] [pipeline] [executor] [forges] [intake] [events]     (default: all six)
//
// server:   a signed push to `kiln serve` over a socket → the first `kiln` pending status at a
//           fake GitHub (median of KILN_BENCH_ROUNDS, default 20), and webhook → final status.
// pipeline: `kiln check` (the binary) on a 200-job pipeline file, and refusing an alias bomb.
// executor: Kiln's executor (one evaluation of the build's jobs, then each job built, 2 at a
//           time) against one `nix build` by hand of the same installables (same sandbox
//           options), fresh derivations for each side: 1 trivial job, 20 trivial jobs, and 10
//           jobs whose attributes share one expensive value, with the evaluator's peak memory.
// forges:   webhook intake (verify + decode + commit to SQLite) of each forge's largest fixture
//           in ../shared/fixtures/forges that starts a build, median of 1,000 deliveries.
// events:   100 clients on /api/v1/events while 2,000 signed pushes arrive (KILN_BENCH_EVENT_BUILDS):
//           events delivered per second, and the delay from a push's 202 to its event at a client.
// intake:   signed pushes with wrk at 32 connections against `kiln serve` and against a bare
//           Hummingbird route that only verifies the HMAC (IntakeLoad.swift), side by side.
// iglu:     Iglu Builder socket jobs (`nix build .#app` of a repository on a loopback git server):
//           job message → `Start Building`, job message → the socket's success, against the same
//           `nix build` by hand of a clone; fresh derivations each round.
import Foundation
import KilnApp
import KilnCore
import KilnForges
import KilnNix
import KilnPipeline
import KilnStore
import KilnTesting
import Logging
import ServiceLifecycle

let rounds = Int(ProcessInfo.processInfo.environment["KILN_BENCH_ROUNDS"] ?? "20") ?? 20
let sections = CommandLine.arguments.dropFirst().isEmpty ? ["server", "pipeline", "executor", "forges", "intake", "events", "pages", "iglu", "instances"] : Array(CommandLine.arguments.dropFirst())
let clock = ContinuousClock()
let nixOptions = ["--extra-experimental-features", "nix-command flakes", "--option", "sandbox", "true",
                  "--option", "sandbox-fallback", "false", "--option", "substituters", ""]

func median(_ values: [Double]) -> Double {
    let sorted = values.sorted()
    return sorted.count % 2 == 1 ? sorted[sorted.count / 2] : (sorted[sorted.count / 2 - 1] + sorted[sorted.count / 2]) / 2
}

func milliseconds(_ duration: Duration) -> Double {
    Double(duration.components.seconds) * 1000 + Double(duration.components.attoseconds) / 1e15
}

func format(_ values: [Double]) -> String {
    if median(values) < 1 {
        return String(format: "median %.0f µs (min %.0f, max %.0f, n=%d)", median(values) * 1000, (values.min() ?? 0) * 1000,
            (values.max() ?? 0) * 1000, values.count)
    }
    return String(format: "median %.1f ms (min %.1f, max %.1f, n=%d)", median(values), values.min() ?? 0, values.max() ?? 0, values.count)
}

/// Runs a command to completion and returns how long it took; stops the bench if it fails.
/// Uses posix_spawn and waitpid: Foundation's Process waits in run-loop steps, which blurs short timings.
@discardableResult
func timed(_ executable: String, _ arguments: [String], expectStatus: Int32 = 0) -> Double {
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
    posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
    let argv = ([executable] + arguments).map { strdup($0) } + [nil]
    defer { argv.forEach { free($0) } }
    var pid: pid_t = 0
    let start = clock.now
    guard posix_spawn(&pid, executable, &actions, nil, argv, environ) == 0 else { fatalError("cannot run \(executable)") }
    var status: Int32 = 0
    waitpid(pid, &status, 0)
    let elapsed = milliseconds(clock.now - start)
    let exitStatus = (status >> 8) & 0xFF
    guard status & 0x7F == 0, exitStatus == expectStatus else {
        fatalError("\(executable) \(arguments.joined(separator: " ")) ended with status \(status)")
    }
    return elapsed
}

/// `kiln serve` in this process from the configuration at `path`: its group, the task running
/// it, and the port it listens on.
func startKiln(_ path: String) async throws -> (ServiceGroup, Task<Void, any Error>, Int) {
    var logger = Logger(label: "bench")
    logger.logLevel = .critical
    let configuration = try KilnConfiguration.load(path: path)
    let (ports, portContinuation) = AsyncStream.makeStream(of: Int.self)
    let group = try await KilnServer.make(configuration, logger: logger) { port in
        portContinuation.yield(port)
        portContinuation.finish()
    }
    let running = Task { try await group.run() }
    return (group, running, await ports.first { _ in true }!)
}

func nixVersion() -> String {
    (try? runCommand("/usr/bin/nix", ["--version"]).trimmingCharacters(in: .whitespacesAndNewlines)) ?? "nix (unknown)"
}

print("kiln bench: \(nixVersion()), \(ProcessInfo.processInfo.activeProcessorCount) cores")

// MARK: - server

if sections.contains("server") {
    let directory = try TemporaryDirectory("kiln-bench")
    defer { directory.remove() }
    let repository = try TestGitRepository(at: directory.appending("origin"))
    let github = try await FakeForge(token: "bench-token", repositories: ["bench/hello"])
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
    let (group, server, port) = try await startKiln(directory.appending("kiln.yaml"))

    var firstPending: [Double] = []
    var webhookToFinal: [Double] = []
    for round in 1...rounds {
        // A fresh derivation each round, so nix never finds it already built.
        try TestFlake(packages: ["kiln": TestFlake.succeeding("kiln-\(UUID().uuidString)")]).write(to: repository.path)
        let sha = try repository.commit("round \(round)")
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
    }
    await group.triggerGracefulShutdown()
    _ = try? await server.value
    await github.stop()
    print("[server] webhook arrival → first pending status at the forge: \(format(firstPending))")
    print("[server] webhook arrival → final status at the forge:         \(format(webhookToFinal))")
}

// MARK: - pipeline

if sections.contains("pipeline") {
    let directory = try TemporaryDirectory("kiln-bench-pipeline")
    defer { directory.remove() }
    var yaml = "on:\n  push:\n    branches: [main, \"release/**\"]\n    paths-ignore: [\"docs/**\"]\njobs:\n"
    for index in 0..<200 {
        yaml += "  job-\(index):\n    build: [.#packages.x86_64-linux.p\(index), .#checks.x86_64-linux.c\(index)]\n"
        if index > 0 { yaml += "    needs: [job-\(index - 1)]\n" }
        yaml += "    timeout: 20m\n    max-silent: 5m\n    systems: [x86_64-linux, aarch64-linux]\n"
    }
    let pipeline = directory.appending("kiln-200.yml")
    try yaml.write(toFile: pipeline, atomically: true, encoding: .utf8)
    var bomb = "a0: &a0 [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n"
    for level in 1...9 {
        bomb += "a\(level): &a\(level) [\(Array(repeating: "*a\(level - 1)", count: 10).joined(separator: ","))]\n"
    }
    bomb += "jobs:\n  x:\n    build: .#x\n"
    let bombFile = directory.appending("bomb.yml")
    try bomb.write(toFile: bombFile, atomically: true, encoding: .utf8)

    let kiln = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("kiln").path
    guard FileManager.default.isExecutableFile(atPath: kiln) else { fatalError("build the kiln product first: \(kiln)") }
    let checkRuns = (0..<rounds).map { _ in timed(kiln, ["check", pipeline]) }
    let bombRuns = (0..<rounds).map { _ in timed(kiln, ["check", bombFile], expectStatus: 1) }
    let parseRuns = (0..<100).map { _ in milliseconds(clock.measure { _ = PipelineFile.parse(yaml) }) }
    let bombParseRuns = (0..<100).map { _ in milliseconds(clock.measure { _ = PipelineFile.parse(bomb) }) }
    print("[pipeline] kiln check on a 200-job file (\(yaml.utf8.count) bytes), whole process: \(format(checkRuns))")
    print("[pipeline]   of which parsing and validating, in process:      \(format(parseRuns))")
    print("[pipeline] kiln check refusing a \(bomb.utf8.count)-byte alias bomb, whole process: \(format(bombRuns))")
    print("[pipeline]   of which the refusal, in process:                  \(format(bombParseRuns))")
}

// MARK: - executor

if sections.contains("executor") {
    let directory = try TemporaryDirectory("kiln-bench-executor")
    defer { directory.remove() }
    let executor = NixExecutor(settings: NixSettings(options: ["substituters": ""]))
    /// A flake of `count` packages named `<prefix><n>`, fresh derivations each time; with
    /// `expensive`, every package's script depends on one value that takes a while to evaluate
    /// (as every attribute of a real flake depends on importing nixpkgs).
    func flake(_ count: Int, prefix: String, expensive: Bool = false) throws -> [String] {
        let salt = UUID().uuidString
        let names = (0..<count).map { "\(prefix)\($0)" }
        try TestFlake(packages: Dictionary(uniqueKeysWithValues: names.map { ($0, TestFlake.succeeding("\($0)-\(salt)")) }))
            .write(to: directory.path)
        if expensive {
            // The same flake, each script also printing a sum over three million numbers.
            var text = try String(contentsOfFile: directory.appending("flake.nix"), encoding: .utf8)
            text = text.replacingOccurrences(
                of: "bb = \"${./bin}/busybox\";",
                with: "bb = \"${./bin}/busybox\";\n    expensive = toString (builtins.foldl' (a: b: a + b) 0 (builtins.genList (x: x * 2) 3000000));")
            text = text.replacingOccurrences(of: "(\"bb=\" + bb + \"; \" + script)", with: "(\"bb=\" + bb + \"; echo \" + expensive + \"; \" + script)")
            try text.write(toFile: directory.appending("flake.nix"), atomically: true, encoding: .utf8)
        }
        return names
    }
    /// Kiln's way: one evaluation of every job, then the jobs, `parallel` at a time.
    /// Returns the time and the evaluator's peak memory.
    func kilnJobs(_ names: [String], parallel: Int) async -> (milliseconds: Double, peakKilobytes: Int) {
        let start = clock.now
        let evaluation = await executor.evaluate(
            EvaluationRequest(
                jobs: names.map { EvaluationRequest.Job(name: $0, target: .installables([".#\($0)"])) }, workspace: directory.path,
                isPlainTree: true),
            log: MemoryLog(), stop: StopSignal())
        await withTaskGroup(of: Void.self) { group in
            var next = names.makeIterator()
            func add() -> Bool {
                guard let name = next.next() else { return false }
                guard case .derivations(let derivations)? = evaluation.results[name] else { fatalError("job \(name): \(String(describing: evaluation.results[name]))") }
                group.addTask {
                    let report = await executor.run(
                        JobRun(
                            name: name, derivations: derivations, timeout: .seconds(600), maxSilent: .seconds(600),
                            missing: evaluation.missing(of: name), knownOutputs: evaluation.outputs),
                        log: MemoryLog(), stop: StopSignal())
                    guard report.outcome == .succeeded else { fatalError("job \(name): \(report.outcome)") }
                }
                return true
            }
            for _ in 0..<parallel where add() {}
            while await group.next() != nil { _ = add() }
        }
        return (milliseconds(clock.now - start), evaluation.peakMemoryKilobytes ?? 0)
    }
    func byHand(_ names: [String]) -> Double {
        timed("/usr/bin/nix", ["build"] + nixOptions + ["--no-link"] + names.map { "path:\(directory.path)#\($0)" })
    }

    var oneKiln: [Double] = []
    var oneHand: [Double] = []
    for _ in 0..<rounds {
        oneKiln.append(await kilnJobs(try flake(1, prefix: "k"), parallel: 1).milliseconds)
        oneHand.append(byHand(try flake(1, prefix: "h")))
    }
    var twentyKiln: [Double] = []
    var twentyHand: [Double] = []
    for _ in 0..<max(3, rounds / 4) {
        twentyKiln.append(await kilnJobs(try flake(20, prefix: "k"), parallel: 2).milliseconds)
        twentyHand.append(byHand(try flake(20, prefix: "h")))
    }
    var sharedKiln: [Double] = []
    var sharedHand: [Double] = []
    var sharedPeak: [Double] = []
    for _ in 0..<max(3, rounds / 4) {
        let kiln = await kilnJobs(try flake(10, prefix: "k", expensive: true), parallel: 2)
        sharedKiln.append(kiln.milliseconds)
        sharedPeak.append(Double(kiln.peakKilobytes) / 1024)
        sharedHand.append(byHand(try flake(10, prefix: "h", expensive: true)))
    }
    print("[executor] 1 trivial job, Kiln executor:                 \(format(oneKiln))")
    print("[executor] 1 trivial derivation, nix build by hand:      \(format(oneHand))")
    print(String(format: "[executor]   ratio (medians): %.2f", median(oneKiln) / median(oneHand)))
    print("[executor] 20 trivial jobs, Kiln executor, 2 at a time:  \(format(twentyKiln))")
    print("[executor] 20 derivations, one nix build by hand:        \(format(twentyHand))")
    print(String(format: "[executor]   ratio (medians): %.2f", median(twentyKiln) / median(twentyHand)))
    print("[executor] 10 jobs over one expensive value, Kiln:       \(format(sharedKiln))")
    print("[executor] the same 10 installables, one nix build:      \(format(sharedHand))")
    print(String(format: "[executor]   ratio (medians): %.2f", median(sharedKiln) / median(sharedHand)))
    print(String(format: "[executor]   evaluator's peak memory: median %.0f MiB (max %.0f)", median(sharedPeak), sharedPeak.max() ?? 0))
}

// MARK: - iglu

if sections.contains("iglu") {
    let directory = try TemporaryDirectory("kiln-bench-iglu")
    defer { directory.remove() }
    let server = try await GitHTTPServer(root: directory.appending("served"), user: "x-access-token", password: "bench-key")
    let origin = try TestGitRepository(at: directory.appending("served/app.git"))
    let github = try await FakeForge(token: "bench-token", repositories: ["bench/hello"])
    for (name, text) in [("secret", "bench-secret"), ("token", "bench-token"), ("admin", "bench-admin-token")] {
        try text.write(toFile: directory.appending(name), atomically: true, encoding: .utf8)
    }
    try """
        server: {listen: "127.0.0.1:0", public-url: "http://kiln.bench", admin-token-file: admin}
        storage: {data-dir: data}
        nix: {options: {substituters: ""}}
        forges:
          github: {type: github, api-url: "\(github.url)", webhook-secret-files: [secret], token-file: token}
        repositories:
          - {forge: github, name: bench/hello, clone-url: "file://\(directory.appending("origin"))"}
        build-service: {git-hosts: ["\(server.url)"]}
        """.write(toFile: directory.appending("kiln.yaml"), atomically: true, encoding: .utf8)
    let (group, running, port) = try await startKiln(directory.appending("kiln.yaml"))
    let job = #"{"git": {"noClone": false, "repository": "\#(server.url)/app.git", "branch": "main", "gitKey": "bench-key", "requiresAuth": true}, "buildOptions": {"command": "nix build .#app", "cachix": {"push": false}}}"#
    var toStart: [Double] = []
    var toSuccess: [Double] = []
    var byHand: [Double] = []
    for round in 1...max(3, rounds / 2) {
        try TestFlake(packages: ["app": TestFlake.succeeding("iglu-\(UUID().uuidString)")]).write(to: origin.path)
        _ = try origin.commit("round \(round)")
        let session = try await IgluClient.run(url: "ws://127.0.0.1:\(port)/api/v1/build", token: "bench-admin-token", job: job)
        guard let sent = session.sentAt, let start = session.answers.first?.at, let end = session.answers.last?.at,
            session.objects.last?["jobStatus"] as? String == "success"
        else { fatalError("iglu round \(round): \(session.objects)") }
        toStart.append(milliseconds(start - sent))
        toSuccess.append(milliseconds(end - sent))
        // The same build by hand, fresh: a clone of the same repository, then nix build.
        try TestFlake(packages: ["app": TestFlake.succeeding("hand-\(UUID().uuidString)")]).write(to: origin.path)
        _ = try origin.commit("round \(round), by hand")
        let clone = directory.appending("clone-\(round)")
        let started = clock.now
        timed("/usr/bin/git", ["clone", "--quiet", "file://\(origin.path)", clone])
        timed("/usr/bin/nix", ["build"] + nixOptions + ["--no-link", "path:\(clone)#app"])
        byHand.append(milliseconds(clock.now - started))
    }
    await group.triggerGracefulShutdown()
    _ = try? await running.value
    await server.stop()
    await github.stop()
    print("[iglu] job message → Start Building:                 \(format(toStart))")
    print("[iglu] job message → Build was successfull:          \(format(toSuccess))")
    print("[iglu] git clone + nix build by hand, same flake:    \(format(byHand))")
    print(String(format: "[iglu]   Kiln's overhead (medians): %.0f ms, ratio %.2f", median(toSuccess) - median(byHand), median(toSuccess) / median(byHand)))
}

// MARK: - forges

if sections.contains("forges") {
    let directory = try TemporaryDirectory("kiln-bench-forges")
    defer { directory.remove() }
    var logger = Logger(label: "bench")
    logger.logLevel = .critical

    /// The event header a fixture was delivered with: its recorded one, else what its file name says.
    func eventName(_ kind: String, _ fixture: String) throws -> String? {
        let header = FixtureForge.eventHeader[kind]!.lowercased()
        if try Fixtures.headers(fixture).contains(where: { $0.name.lowercased() == header }) { return nil }
        let stem = String(fixture.split(separator: "/").last!.split(separator: ".").first!)
        switch kind {
        case "gitlab": return ["push": "Push Hook", "tag_push": "Tag Push Hook", "merge_request": "Merge Request Hook"][stem]
        case "bitbucket-cloud", "bitbucket-server":
            let parts = stem.split(separator: "_", maxSplits: 1)
            return parts.count == 2 ? "\(parts[0]):\(parts[1])" : stem
        default: return stem
        }
    }

    /// Intake over a fresh database that knows the fixture's repository.
    func intake(_ adapter: FixtureForge, repository: String, database: String) async throws -> WebhookIntake {
        let store = try SQLStore(path: directory.appending(database))
        let id = try await store.syncRepositories([(adapter.kind, repository)])[0]
        return WebhookIntake(
            endpoints: [adapter.kind: ForgeEndpoint(
                forge: adapter.forge, repositories: [repository.lowercased(): KilnCore.Repository(id: id, name: repository, cloneURL: "file:///nowhere")])],
            coordinator: BuildCoordinator(store: store, logger: logger), logger: logger)
    }

    func isNewBuild(_ result: IntakeResult) -> Bool {
        if case .accepted(let builds) = result { return builds.allSatisfy(\.isNew) }
        return false
    }

    for kind in ["github", "gitlab", "bitbucket-cloud", "bitbucket-server", "gitea", "forgejo"] {
        let adapter = FixtureForge.make(kind)
        let files = try FileManager.default.contentsOfDirectory(atPath: "\(Fixtures.directory)/\(kind)")
            .filter { $0.hasSuffix(".json") && !$0.hasSuffix(".headers.json") }.map { "\(kind)/\($0)" }
        let bySize = try files.map { (name: $0, bytes: try Fixtures.body($0).count) }.sorted { $0.bytes > $1.bytes }
        // The largest fixture that starts a build every time it is delivered under a new id
        // (an update whose head did not move is ignored from its second delivery on).
        var chosen: (fixture: String, bytes: Int, event: String?, repository: String)?
        for (fixture, bytes) in bySize {
            let event = try eventName(kind, fixture)
            guard case .events(let events) = try adapter.forge.receive(adapter.delivery(fixture, event: event)) else { continue }
            let repository: String?
            switch events.first {
            case .push(let push): repository = push.repository
            case .pullRequest(let pull): repository = pull.repository
            default: repository = nil
            }
            guard let repository else { continue }
            let trial = try await intake(adapter, repository: repository, database: "trial-\(UUID().uuidString).sqlite")
            let first = try await trial.receive(forge: kind, adapter.delivery(fixture, event: event, id: "a"))
            let second = try await trial.receive(forge: kind, adapter.delivery(fixture, event: event, id: "b"))
            guard isNewBuild(first), isNewBuild(second) else { continue }
            chosen = (fixture, bytes, event, repository)
            break
        }
        guard let chosen else { fatalError("no \(kind) fixture starts a build") }
        let measured = try await intake(adapter, repository: chosen.repository, database: "\(kind).sqlite")
        let deliveries = try (0..<1000).map { try adapter.delivery(chosen.fixture, event: chosen.event, id: "bench-\($0)") }
        var times: [Double] = []
        for delivery in deliveries {
            let start = clock.now
            let result = try await measured.receive(forge: kind, delivery)
            times.append(milliseconds(clock.now - start))
            guard isNewBuild(result) else { fatalError("\(chosen.fixture): \(result)") }
        }
        let label = "\(kind) \(chosen.fixture.split(separator: "/").last!) (\(chosen.bytes) bytes)"
        print("[forges] intake of \(label.padding(toLength: 64, withPad: " ", startingAt: 0)) \(format(times))")
        // The adapter alone: signature and decoding, which a request pays before the database.
        var decoding: [Double] = []
        for delivery in deliveries {
            let start = clock.now
            guard case .events = try adapter.forge.receive(delivery) else { fatalError("\(chosen.fixture) decoded to nothing") }
            decoding.append(milliseconds(clock.now - start))
        }
        print("[forges] verify + decode of \(label.padding(toLength: 57, withPad: " ", startingAt: 0)) \(format(decoding))")
    }
}

// MARK: - intake

if sections.contains("intake") {
    try await IntakeLoad.run(seconds: Int(ProcessInfo.processInfo.environment["KILN_BENCH_SECONDS"] ?? "10") ?? 10)
}

// MARK: - events

if sections.contains("events") {
    try await EventLoad.run(clients: 100, builds: Int(ProcessInfo.processInfo.environment["KILN_BENCH_EVENT_BUILDS"] ?? "2000") ?? 2000)
}

// MARK: - pages

if sections.contains("pages") {
    try await PageLoad.run()
}

// MARK: - instances

if sections.contains("instances") {
    try await InstanceLoad.run(builds: Int(ProcessInfo.processInfo.environment["KILN_BENCH_INSTANCE_BUILDS"] ?? "30") ?? 30)
}
