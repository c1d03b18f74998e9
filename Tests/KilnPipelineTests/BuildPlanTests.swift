import Testing

@testable import KilnPipeline

@Suite struct BuildPlanTests {
    private func spec(_ yaml: String) throws -> PipelineSpec {
        guard case .valid(let spec) = PipelineFile.parse(yaml) else {
            throw PlanTestError.invalid(yaml)
        }
        return spec
    }

    enum PlanTestError: Error { case invalid(String) }

    static let filterCases: [(on: String, ref: String, builds: Bool)] = [
        ("", "refs/heads/main", true),
        ("", "refs/heads/feature/x", true),
        ("", "refs/tags/v1", false),
        ("on:\n  push:\n", "refs/heads/any", true),
        ("on:\n  push:\n", "refs/tags/v1", false),
        ("on:\n  push:\n    branches: [main, \"release/*\"]\n", "refs/heads/release/1.0", true),
        ("on:\n  push:\n    branches: [main, \"release/*\"]\n", "refs/heads/release/1.0/hotfix", false),
        ("on:\n  push:\n    branches: [\"release/**\"]\n", "refs/heads/release/1.0/hotfix", true),
        ("on:\n  push:\n    branches: [main]\n", "refs/heads/mainline", false),
        ("on:\n  push:\n    tags: [\"v*\"]\n", "refs/tags/v1.2", true),
        ("on:\n  push:\n    tags: [\"v*\"]\n", "refs/heads/main", false),
        ("on:\n  push:\n    branches: [main]\n    tags: [\"v*\"]\n", "refs/tags/x1", false),
        ("on:\n  pull_request:\n", "refs/heads/main", false),
    ]

    @Test(arguments: filterCases)
    func onFilters(on: String, ref: String, builds: Bool) throws {
        let spec = try spec(on + "jobs:\n  a:\n    build: .#a\n")
        let plan = BuildPlan.make(spec, for: .push(GitRef(fullName: ref)!), limits: .standard)
        if builds {
            #expect(plan == .jobs([PlannedJob(name: "a", installables: [".#a"], needs: [], timeout: .seconds(1800), maxSilent: .seconds(600))]))
        } else {
            guard case .skipped(let reason) = plan else {
                Issue.record("expected \(ref) to be skipped, got \(plan)")
                return
            }
            #expect(!reason.isEmpty)
        }
    }

    @Test func skipReasonNamesTheFilter() throws {
        let spec = try spec("on:\n  push:\n    branches: [main]\njobs:\n  a:\n    build: .#a\n")
        #expect(
            BuildPlan.make(spec, for: .push(.branch("dev")), limits: .standard)
                == .skipped(reason: "branch 'dev' does not match on.push.branches (main)"))
    }

    @Test func timeoutAboveTheServerCapIsAnError() throws {
        let spec = try spec("jobs:\n  slow:\n    build: .#a\n    timeout: 2h\n")
        #expect(
            BuildPlan.make(spec, for: .push(.branch("main")), limits: .standard)
                == .invalid([
                    Diagnostic(
                        line: 2, column: 3,
                        message: "job 'slow' asks for a timeout of 2h; this server's max-timeout is 1h",
                        code: .exceedsLimit)
                ]))
    }
}

@Suite struct DurationAndGlobTests {
    @Test(arguments: [("30s", 30), ("5m", 300), ("1h", 3600), ("1h30m", 5400), ("2h15m10s", 8110), ("90m", 5400)])
    func validDurations(text: String, seconds: Int64) {
        #expect(KilnDuration.parse(text) == .seconds(seconds))
    }

    @Test(arguments: ["", "30", "m", "1m1h", "1h1h", "0s", "-5m", "1.5h", "5 m", "1d", "99999999999h"])
    func invalidDurations(text: String) {
        #expect(KilnDuration.parse(text) == nil)
    }

    @Test func formatRoundTrips() {
        for seconds: Int64 in [1, 59, 60, 61, 3600, 5400, 8110] {
            #expect(KilnDuration.parse(KilnDuration.format(.seconds(seconds))) == .seconds(seconds))
        }
    }

    @Test(arguments: [
        ("main", "main", true), ("main", "main2", false), ("release/*", "release/1", true),
        ("release/*", "release/1/2", false), ("release/**", "release/1/2", true), ("**", "a/b/c", true),
        ("v?", "v1", true), ("v?", "v12", false), ("*-fix", "bug-fix", true), ("*", "", true),
        ("a*b*c", "aXXbYYc", true), ("a*b*c", "aXXbYY", false),
    ])
    func globs(pattern: String, name: String, matches: Bool) {
        #expect(Glob(pattern).matches(name) == matches)
    }
}
