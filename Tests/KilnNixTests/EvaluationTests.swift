import Foundation
import KilnCore
import KilnPipeline
import KilnTesting
import Testing

@testable import KilnNix

/// A build's jobs are evaluated once, together; errors still belong to the job that has them.
@Suite(.enabled(if: NixTest.enabled, "nix is not installed (set KILN_REQUIRE_NIX to make this a failure)"))
struct EvaluationTests {
    let executor = NixExecutor(settings: NixSettings(options: NixTest.offlineOptions, killGrace: .seconds(2)))

    static func marker() -> String { String(UInt64.random(in: 1_000_000_000...9_999_999_999)) }

    /// A flake whose packages all depend on one traced value: nix prints the trace each time
    /// the value is evaluated. `broken` names attributes that throw.
    static func sharedFlake(_ names: [String], marker: String, broken: [String] = [], in directory: String) throws {
        try TestFlake(packages: [:]).write(to: directory)
        let packages = names.map { "        \($0) = mk \"\($0)-\(marker)\";" }
            + broken.map { "        \($0) = throw \"\($0) is broken-\(marker)\";" }
        try """
            {
              outputs = { self }: let
                bb = "${./bin}/busybox";
                shared = builtins.trace "evaluating-the-shared-value-\(marker)" "\(marker)";
                mk = name: derivation {
                  inherit name;
                  system = "x86_64-linux";
                  builder = bb;
                  args = [ "sh" "-c" ("echo " + shared + "; " + bb + " mkdir $out") ];
                };
              in {
                packages.x86_64-linux = {
            \(packages.joined(separator: "\n"))
                };
                legacyPackages.x86_64-linux.nested.deeper = mk "nested-\(marker)";
                other.thing = mk "other-\(marker)";
              };
            }

            """.write(toFile: directory + "/flake.nix", atomically: true, encoding: .utf8)
    }

    func request(_ jobs: [(String, JobTarget)], in directory: String, recorded: RecordedEvaluation? = nil) -> EvaluationRequest {
        EvaluationRequest(
            jobs: jobs.map { EvaluationRequest.Job(name: $0.0, target: $0.1) }, workspace: directory, isPlainTree: true,
            recorded: recorded)
    }

    /// What `nix path-info --derivation` answers for an installable, by hand.
    static func byHand(_ installable: String, in directory: String) throws -> [String] {
        try runCommand(
            "/usr/bin/nix",
            ["path-info", "--derivation", "--extra-experimental-features", "nix-command flakes", "path:\(directory)\(installable.dropFirst())"]
        ).split(separator: "\n").map(String.init)
    }

    @Test(.timeLimit(.minutes(2))) func flakeJobsShareOneEvaluation() async throws {
        try await withTemporaryDirectory("kiln-eval-shared") { directory in
            let marker = Self.marker()
            try Self.sharedFlake(["a", "b", "c"], marker: marker, in: directory.path)
            let log = MemoryLog()
            let report = await executor.evaluate(
                request(
                    [
                        ("a", .installables([".#a"])), ("bc", .installables([".#b", ".#c"])),
                        ("nested", .installables([".#nested.deeper"])), ("other", .installables([".#other.thing"])),
                    ], in: directory.path),
                log: log, stop: StopSignal())
            // One evaluation of what the attributes share, not one per job or installable.
            #expect(log.text.components(separatedBy: "evaluating-the-shared-value-\(marker)").count - 1 == 1, "\(log.text)")
            #expect(report.results["a"] == .derivations(try Self.byHand(".#a", in: directory.path)))
            #expect(report.results["bc"] == .derivations(try Self.byHand(".#b", in: directory.path) + Self.byHand(".#c", in: directory.path)))
            // nix's lookup order: packages.<system>, legacyPackages.<system>, then the flake's own outputs.
            #expect(report.results["nested"] == .derivations(try Self.byHand(".#nested.deeper", in: directory.path)))
            #expect(report.results["other"] == .derivations(try Self.byHand(".#other.thing", in: directory.path)))
            #expect(report.summary.contains("evaluated 4 jobs"))
        }
    }

    @Test(.timeLimit(.minutes(2))) func anEvaluationErrorFailsOnlyItsJobWithNixsMessage() async throws {
        try await withTemporaryDirectory("kiln-eval-error") { directory in
            let marker = Self.marker()
            try Self.sharedFlake(["good", "fine"], marker: marker, broken: ["bad"], in: directory.path)
            let log = MemoryLog()
            let report = await executor.evaluate(
                request(
                    [("good", .installables([".#good"])), ("bad", .installables([".#bad"])), ("fine", .installables([".#fine"])),
                     ("missing", .installables([".#nope"]))],
                    in: directory.path),
                log: log, stop: StopSignal())
            #expect(report.results["good"] == .derivations(try Self.byHand(".#good", in: directory.path)))
            #expect(report.results["fine"] == .derivations(try Self.byHand(".#fine", in: directory.path)))
            guard case .failed(.failed(_, let reason), let messages)? = report.results["bad"] else {
                Issue.record("expected bad to fail, got \(String(describing: report.results["bad"]))")
                return
            }
            #expect(reason == "evaluation failed: bad is broken-\(marker)")
            #expect(messages.contains("bad is broken-\(marker)"))
            guard case .failed(.failed(_, let missing), let missingMessages)? = report.results["missing"] else {
                Issue.record("expected missing to fail, got \(String(describing: report.results["missing"]))")
                return
            }
            #expect(missing.contains("does not provide attribute"), "\(missing)")
            // Each job's error is its own: neither names the other's.
            #expect(!missingMessages.contains("broken-\(marker)"))
            #expect(log.text.contains("one by one"))
        }
    }

    @Test(.timeLimit(.minutes(2))) func classicAttributesOfOneFileAreEvaluatedTogetherAsNixInstantiateWould() async throws {
        try await withTemporaryDirectory("kiln-eval-classic") { directory in
            let marker = Self.marker()
            try TestFlake(packages: [:]).write(to: directory.path)
            try """
                { salt ? "\(marker)" }:
                let
                  bb = "${./bin}/busybox";
                  shared = builtins.trace "classic-shared-\(marker)" salt;
                  mk = name: derivation {
                    name = name + "-" + shared;
                    system = "x86_64-linux";
                    builder = bb;
                    args = [ "sh" "-c" "${bb} mkdir $out" ];
                  };
                in {
                  one = mk "one";
                  set = { recurseForDerivations = true; x = mk "x"; inner = { recurseForDerivations = true; y = mk "y"; }; ignored = { z = mk "z"; }; };
                  list = [ (mk "l1") [ (mk "l2") ] ];
                  fn = { suffix ? "f" }: mk suffix;
                  version = "1.0";
                }
                """.write(toFile: directory.appending("ci.nix"), atomically: true, encoding: .utf8)
            let attributes = ["one", "set", "list", "fn"]
            let log = MemoryLog()
            let report = await executor.evaluate(
                request(attributes.map { ($0, JobTarget.classic(file: "ci.nix", attribute: $0)) }, in: directory.path),
                log: log, stop: StopSignal())
            #expect(log.text.components(separatedBy: "classic-shared-\(marker)").count - 1 == 1, "\(log.text)")
            for attribute in attributes {
                let expected = try runCommand(
                    "/usr/bin/nix-instantiate", [directory.appending("ci.nix"), "-A", attribute]
                ).split(separator: "\n").map(String.init).filter { $0.hasSuffix(".drv") }
                guard case .derivations(let found)? = report.results[attribute] else {
                    Issue.record("\(attribute): \(String(describing: report.results[attribute]))")
                    continue
                }
                #expect(found.sorted() == expected.sorted(), "\(attribute)")
            }
            // Not a derivation: nix-instantiate's own error, for that job only.
            let mixed = await executor.evaluate(
                request(["one", "version"].map { ($0, JobTarget.classic(file: "ci.nix", attribute: $0)) }, in: directory.path),
                log: MemoryLog(), stop: StopSignal())
            #expect(mixed.results["one"] == report.results["one"])
            guard case .failed(.failed(_, let reason), _)? = mixed.results["version"] else {
                Issue.record("version: \(String(describing: mixed.results["version"]))")
                return
            }
            #expect(reason.contains("does not evaluate to a derivation"), "\(reason)")
        }
    }

    @Test(.timeLimit(.minutes(2))) func recordedDerivationsAreUsedWhileTheyAreInTheStore() async throws {
        try await withTemporaryDirectory("kiln-eval-recorded") { directory in
            let marker = Self.marker()
            try Self.sharedFlake(["a", "b"], marker: marker, in: directory.path)
            let jobs: [(String, JobTarget)] = [("a", .installables([".#a"])), ("b", .installables([".#b"]))]
            let first = await executor.evaluate(request(jobs, in: directory.path), log: MemoryLog(), stop: StopSignal())
            let derivations = first.results.compactMapValues { result -> [String]? in
                if case .derivations(let found) = result { return found }
                return nil
            }
            #expect(derivations.count == 2)
            let log = MemoryLog()
            let again = await executor.evaluate(
                request(jobs, in: directory.path, recorded: RecordedEvaluation(source: "build #7", derivations: derivations)),
                log: log, stop: StopSignal())
            #expect(again.results == first.results)
            #expect(log.text.contains("the derivations evaluated for build #7"))
            #expect(!log.text.contains("evaluating-the-shared-value"))
            // A derivation that is gone from the store: evaluated again.
            var stale = derivations
            stale["a"] = ["/nix/store/00000000000000000000000000000000-gone-\(marker).drv"]
            let fresh = MemoryLog()
            let evaluated = await executor.evaluate(
                request(jobs, in: directory.path, recorded: RecordedEvaluation(source: "build #8", derivations: stale)),
                log: fresh, stop: StopSignal())
            #expect(evaluated.results == first.results)
            #expect(fresh.text.contains("evaluating-the-shared-value-\(marker)"))
        }
    }

    @Test(.timeLimit(.minutes(2))) func evaluationHasItsOwnTimeAndMemoryLimits() async throws {
        try await withTemporaryDirectory("kiln-eval-limits") { directory in
            try TestFlake(packages: [:]).write(to: directory.path)
            // Each sum takes long and holds a large list: the limits stop it, not nix.
            try """
                {
                  outputs = { self }: {
                    packages.x86_64-linux.huge = builtins.foldl' (a: b: a + b) 0 (builtins.genList (x: x) 400000000);
                    packages.x86_64-linux.other = builtins.foldl' (a: b: a + b) 0 (builtins.genList (x: x) 400000000);
                  };
                }
                """.write(toFile: directory.appending("flake.nix"), atomically: true, encoding: .utf8)
            let jobs: [(String, JobTarget)] = [("huge", .installables([".#huge"])), ("other", .installables([".#other"]))]
            let slow = NixExecutor(settings: NixSettings(options: NixTest.offlineOptions, killGrace: .seconds(2), evalTimeout: .seconds(2)))
            let timed = await slow.evaluate(request(jobs, in: directory.path), log: MemoryLog(), stop: StopSignal())
            #expect(timed.results["huge"] == .failed(.timedOut(after: .seconds(2), silent: false), log: ""))
            #expect(timed.results["other"] == .failed(.timedOut(after: .seconds(2), silent: false), log: ""))
            let small = NixExecutor(
                settings: NixSettings(options: NixTest.offlineOptions, killGrace: .seconds(2), evalMaxMemoryKilobytes: 200 << 10))
            let log = MemoryLog()
            let limited = await small.evaluate(request([jobs[0]], in: directory.path), log: log, stop: StopSignal())
            guard case .failed(.failed(_, let reason), _)? = limited.results["huge"] else {
                Issue.record("expected a memory failure, got \(String(describing: limited.results["huge"]))")
                return
            }
            #expect(reason == "evaluation used more than 200 MiB of memory (nix.eval-max-memory)")
            // Together past the limit: each job is tried alone, and fails by itself.
            let both = MemoryLog()
            let together = await small.evaluate(request(jobs, in: directory.path), log: both, stop: StopSignal())
            #expect(both.text.contains("together used more than 200 MiB"), "\(both.text)")
            for name in ["huge", "other"] {
                guard case .failed(.failed(_, let reason), _)? = together.results[name] else {
                    Issue.record("\(name): \(String(describing: together.results[name]))")
                    continue
                }
                #expect(reason.hasPrefix("evaluation used more than 200 MiB"))
            }
        }
    }

    @Test(.timeLimit(.minutes(2))) func aJobWhoseDerivationsAreBuiltSucceedsAtOnce() async throws {
        try await withTemporaryDirectory("kiln-eval-valid") { directory in
            let marker = Self.marker()
            try TestFlake(packages: ["once\(marker)": TestFlake.succeeding("built-\(marker)")]).write(to: directory.path)
            let job = TestJob(
                name: "once", target: .installables([".#once\(marker)"]), workspace: directory.path, isPlainTree: true,
                timeout: .seconds(60), maxSilent: .seconds(60))
            let first = await executor.run(job, log: MemoryLog(), stop: StopSignal())
            #expect(first.outcome == .succeeded)
            #expect(first.built.count == 1 && first.built[0].hasSuffix("-once\(marker).drv"))
            let log = MemoryLog()
            let second = await executor.run(job, log: log, stop: StopSignal())
            #expect(second.outcome == .succeeded)
            #expect(second.built.isEmpty && second.waitedFor.isEmpty)
            #expect(second.outputs.map(\.path) == first.outputs.map(\.path))
            #expect(second.outputs.first?.narSize != nil)
            #expect(log.text.contains("were in the store already; nothing to build"), "\(log.text)")
            #expect(!log.text.contains("built-\(marker)"))
        }
    }

    @Test(.timeLimit(.minutes(2))) func aDerivationTwoJobsNeedIsBuiltByOneAndWaitedForByTheOther() async throws {
        try await withTemporaryDirectory("kiln-eval-waited") { directory in
            let marker = Self.marker()
            try TestFlake(packages: ["shared\(marker)": "echo \(marker); $bb sleep 2; $bb mkdir $out"]).write(to: directory.path)
            let evaluation = await executor.evaluate(
                request([("one", .installables([".#shared\(marker)"])), ("two", .installables([".#shared\(marker)"]))], in: directory.path),
                log: MemoryLog(), stop: StopSignal())
            guard case .derivations(let derivations)? = evaluation.results["one"] else {
                Issue.record("\(evaluation.results)")
                return
            }
            func job(_ name: String) -> JobRun {
                JobRun(
                    name: name, derivations: derivations, timeout: .seconds(60), maxSilent: .seconds(60),
                    missing: evaluation.missing(of: name))
            }
            async let a = executor.run(job("one"), log: MemoryLog(), stop: StopSignal())
            async let b = executor.run(job("two"), log: MemoryLog(), stop: StopSignal())
            let reports = await [a, b]
            #expect(reports.allSatisfy { $0.outcome == .succeeded })
            #expect(reports.map(\.built.count).sorted() == [0, 1], "\(reports.map(\.built))")
            #expect(reports.map(\.waitedFor.count).sorted() == [0, 1], "\(reports.map(\.waitedFor))")
            #expect(Set(reports.flatMap(\.built) + reports.flatMap(\.waitedFor)) == Set(derivations))
            #expect(evaluation.missing(of: "one") == derivations)
        }
    }

    @Test func turnsAreTakenAndGivenBack() {
        let turns = Turns(2)
        #expect(turns.tryTake() && turns.tryTake())
        #expect(!turns.tryTake())
        turns.give()
        #expect(turns.tryTake())
        #expect(!turns.tryTake())
    }

    @Test(.timeLimit(.minutes(2))) func anEvaluationWaitsForATurnAndACancelEndsTheWait() async throws {
        try await withTemporaryDirectory("kiln-eval-turns") { directory in
            let marker = Self.marker()
            try Self.sharedFlake(["a"], marker: marker, in: directory.path)
            let single = NixExecutor(settings: NixSettings(options: NixTest.offlineOptions, maxParallelEvaluations: 1))
            #expect(single.evaluationTurns.tryTake())  // another evaluation is running
            let log = MemoryLog()
            let stop = StopSignal()
            async let waited = single.evaluate(request([("a", .installables([".#a"]))], in: directory.path), log: log, stop: stop)
            try await eventually("the evaluation to wait for a turn", within: .seconds(10)) { log.text.contains("waiting for another evaluation") }
            stop.request(.requested)
            #expect(await waited.results["a"] == .failed(.cancelled(.requested), log: "cancelled before evaluation\n"))
            #expect(!log.text.contains("shared-value"))
            single.evaluationTurns.give()
            let evaluated = await single.evaluate(request([("a", .installables([".#a"]))], in: directory.path), log: MemoryLog(), stop: StopSignal())
            #expect(evaluated.results["a"] == .derivations(try Self.byHand(".#a", in: directory.path)))
        }
    }

    @Test func installablesAreLookedUpAsNixLooksThemUp() {
        #expect(NixExecutor.attributeCandidates(".#hello", system: "x86_64-linux") == [
            ["packages", "x86_64-linux", "hello"], ["legacyPackages", "x86_64-linux", "hello"], ["hello"],
        ])
        #expect(NixExecutor.attributeCandidates(".", system: "aarch64-linux") == [
            ["packages", "aarch64-linux", "default"], ["defaultPackage", "aarch64-linux"],
        ])
        #expect(NixExecutor.attributeCandidates("./sub#a.\"b.c\".d^out", system: "s") == [
            ["packages", "s", "a", "b.c", "d"], ["legacyPackages", "s", "a", "b.c", "d"], ["a", "b.c", "d"],
        ])
        #expect(NixString.literal("a\"b\\c${d}\n") == "\"a\\\"b\\\\c\\${d}\\n\"")
    }
}
