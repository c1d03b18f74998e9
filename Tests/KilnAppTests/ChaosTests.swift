import Foundation
import KilnTesting
import Synchronization
import Testing

/// `make chaos`: builds on several branches while `kiln serve` is killed with SIGKILL at random
/// points and restarted on the same data, and the forge answers 5xx, 429 and 403 rate limits
/// for a while. Not part of `make test` (set KILN_CHAOS=1). KILN_CHAOS_SEED repeats a run;
/// KILN_CHAOS_BUILDS sets how many pushes (default 8).
@Suite(.enabled(if: ProcessInfo.processInfo.environment["KILN_CHAOS"] != nil, "set KILN_CHAOS=1 (make chaos)"))
struct ChaosTests {
    /// A deterministic generator (SplitMix64), so that a seed repeats a run's choices.
    struct Dice {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        mutating func below(_ bound: Int) -> Int { Int(next() % UInt64(bound)) }
        mutating func chance(_ percent: Int) -> Bool { below(100) < percent }
    }

    /// The parent of `pid`.
    static func parent(of pid: Int32) -> Int32? {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8), let close = stat.lastIndex(of: ")") else { return nil }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        return fields.count > 1 ? Int32(fields[1]) : nil
    }

    /// The file name of the program `pid` runs.
    static func programName(_ pid: Int32) -> String? {
        (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/exe")).map { ($0 as NSString).lastPathComponent }
    }

    /// Samples the machine while the run goes on: a derivation of this run that two of Kiln's nix
    /// processes work on at once is a job run twice at once.
    final class Watcher: Sendable {
        let doubled = Mutex<Set<String>>([])
        /// Every output of this run seen rooted by one of Kiln's nix processes.
        let seen = Mutex<Set<String>>([])
        let stopped = Mutex(false)

        func run(prefix: String) async {
            while !stopped.withLock({ $0 }) {
                // The nix processes Kiln started (children of `kiln`: a job's nix-store, or a kept
                // nix-daemon; a child nix forks for a build is not one) and the outputs of this
                // run's derivations each has taken as temporary roots: nix takes them before it
                // builds or waits for another nix to build, and keeps them while it lives. (A
                // derivation of this run is one job's, built once.)
                var holders: [String: Int] = [:]
                let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
                for pid in entries.compactMap(Int32.init)
                where ChaosTests.programName(pid) == "nix" && ChaosTests.parent(of: pid).flatMap(ChaosTests.programName) == "kiln" {
                    guard let roots = FileManager.default.contents(atPath: "/nix/var/nix/temproots/\(pid)") else { continue }
                    let paths = Set(roots.split(separator: 0).map { String(decoding: $0, as: UTF8.self) })
                    for path in paths where path.contains(prefix) && !path.hasSuffix(".drv") { holders[path, default: 0] += 1 }
                }
                let twice = holders.filter { $0.value > 1 }.map(\.key)
                if !twice.isEmpty { doubled.withLock { $0.formUnion(twice) } }
                seen.withLock { $0.formUnion(holders.keys) }
                try? await Task.sleep(for: .milliseconds(50))
            }
        }
    }

    @Test(.timeLimit(.minutes(20))) func buildsEndFinalThroughKillsAndForgeFailures() async throws {
        let environment = ProcessInfo.processInfo.environment
        let seed = environment["KILN_CHAOS_SEED"].flatMap(UInt64.init) ?? UInt64.random(in: 1...999_999)
        let builds = environment["KILN_CHAOS_BUILDS"].flatMap(Int.init) ?? 8
        print("chaos: seed \(seed) (KILN_CHAOS_SEED=\(seed) repeats this run), \(builds) pushes")
        var dice = Dice(state: seed)
        let started = ContinuousClock.now
        let world = try await World.make()
        defer { Task { await world.close() } }
        let prefix = "chaos\(seed)x"
        // The processes of this run: builders and jobs' nix (the derivations' names carry the
        // prefix), and the kept nix-daemons (their homes are in the data directory).
        let daemons = world.directory.appending("data/nix-daemons")
        let running = { Processes.matching(prefix) + Processes.matching(daemons) }
        let port = try KilnProcess.freePort()
        let watcher = Watcher()
        let watching = Task { await watcher.run(prefix: prefix) }
        defer {
            watcher.stopped.withLock { $0 = true }
            watching.cancel()
        }

        try world.repository.write("README", "chaos\n")
        try world.repository.commit("start")
        var kiln = try await KilnProcess.serve(world, port: port)
        var kills = 0
        var injected = 0
        var accepted: [String] = []
        let branches = ["main", "one", "two"]
        var created: Set<String> = ["main"]
        for round in 1...builds {
            // A commit with two jobs of fresh derivations (the marker is in their names).
            let branch = branches[dice.below(branches.count)]
            if created.contains(branch) {
                try world.repository.git(["checkout", "--quiet", branch])
            } else {
                try world.repository.git(["checkout", "--quiet", "-b", branch, "main"])
                created.insert(branch)
            }
            let marker = "\(prefix)\(round)"
            let seconds = 1 + dice.below(3)
            try TestFlake(packages: [
                "a\(marker)": "echo a-\(marker); $bb sleep \(seconds); $bb mkdir $out",
                "b\(marker)": "echo b-\(marker); $bb sleep 1; $bb mkdir $out",
            ]).write(to: world.repository.path)
            try world.repository.write(
                ".kiln.yml", "jobs:\n  a:\n    build: .#a\(marker)\n  b:\n    build: .#b\(marker)\n    needs: a\n")
            let sha = try world.repository.commit("round \(round) on \(branch)")
            // The forge stumbles now and then.
            if dice.chance(40) {
                let answers: [(status: Int, retryAfter: Int?)] = (0..<(1 + dice.below(4))).map { _ in
                    [(500, nil), (502, nil), (429, 1), (403, 1)][dice.below(4)]
                }
                world.github.failNext(answers)
                injected += answers.count
            }
            // Delivered until Kiln answers 202, as a forge redelivers.
            let body = Payloads.githubPush(repository: World.name, ref: "refs/heads/\(branch)", sha: sha)
            let delivery = "chaos-\(seed)-\(round)"
            _ = try await eventually("delivery \(round) to be accepted", within: .seconds(60)) { () -> Bool? in
                let answer = try? await HTTPTestClient.send(
                    "POST", "http://127.0.0.1:\(port)/webhooks/github",
                    headers: WebhookSigner.githubHeaders(event: "push", body: body, secret: World.secret, delivery: delivery), body: body)
                return answer?.status == 202 ? true : nil
            }
            accepted.append(sha)
            // Sometimes Kiln dies: at once, or while something builds.
            if dice.chance(45) {
                if dice.chance(60) {
                    try? await eventually("something to build", within: .seconds(20)) { !Processes.matching(prefix).isEmpty }
                    try await Task.sleep(for: .milliseconds(Int64(dice.below(1500))))
                }
                kill(kiln.processIdentifier, SIGKILL)
                kiln.waitUntilExit()
                kills += 1
                // nix and its builders die with Kiln; whatever else is left of that life (a
                // jail caught starting) is ended by the next start, before any job runs again.
                try await eventually("no nix process to outlive Kiln", within: .seconds(20)) {
                    running().allSatisfy { Self.programName($0) == "bwrap" }
                }
                let leftovers = running()
                kiln = try await KilnProcess.serve(world, port: port)
                do {
                    try await eventually("the restart to end what a killed Kiln left", within: .seconds(20)) {
                        leftovers.allSatisfy { !running().contains($0) }
                    }
                } catch {
                    let left = running().map { pid in
                        String(decoding: FileManager.default.contents(atPath: "/proc/\(pid)/cmdline") ?? Data(), as: UTF8.self)
                            .replacingOccurrences(of: "\0", with: " ").prefix(120) + " | "
                            + ((try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)) ?? "").split(separator: "\n")
                            .filter { $0.hasPrefix("PPid") || $0.hasPrefix("NSpid") || $0.hasPrefix("State") }.joined(separator: ", ")
                    }
                    Issue.record("processes outlived Kiln: \(left)")
                    throw error
                }
            }
        }

        // Every accepted commit's contexts end final, and none goes back to pending after a final state.
        let finalStates: Set<String> = ["success", "failure", "error"]
        try await eventually("every context of every accepted commit to be final", within: .seconds(600)) {
            accepted.allSatisfy { sha in
                ["kiln", "kiln/a", "kiln/b"].allSatisfy { context in
                    let states = world.github.states(context, sha: sha)
                    // A commit superseded before planning has only its aggregate context.
                    return (states.isEmpty && context != "kiln") || states.last.map(finalStates.contains) == true
                }
            }
        }
        kiln.terminate()
        kiln.waitUntilExit()
        try await eventually("no nix process to outlive Kiln's stop", within: .seconds(20)) { running().isEmpty }
        var reopened = 0
        for sha in accepted {
            for context in ["kiln", "kiln/a", "kiln/b"] {
                let states = world.github.states(context, sha: sha)
                if let firstFinal = states.firstIndex(where: finalStates.contains), states[firstFinal...].contains("pending") {
                    reopened += 1
                    Issue.record("\(context) on \(sha.prefix(7)) went back to pending: \(states)")
                }
            }
        }
        let doubled = watcher.doubled.withLock { $0 }
        #expect(doubled.isEmpty, "jobs ran twice at once: \(doubled.sorted())")
        let watched = watcher.seen.withLock { $0.count }
        #expect(watched > 0, "the watcher saw no build of this run: it could not have seen one twice")
        #expect(reopened == 0)
        let elapsed = ContinuousClock.now - started
        print(
            "chaos: seed \(seed): \(accepted.count) pushes accepted, \(kills) kills and restarts, \(injected) forge failures injected, "
                + "\(world.github.statuses.count) statuses posted in \(world.github.attempts) attempts, "
                + "\(watched) outputs watched, \(doubled.count) jobs run twice at once, \(reopened) contexts reopened, \(elapsed.components.seconds) s")
    }
}
