import Foundation
import KilnPipeline
import Testing

/// The table in `Cases/`: every pipeline file plans, or fails, exactly as its `.expected` says.
@Suite struct PipelineCaseTests {
    @Test(arguments: PipelineCase.valid)
    func validFilePlans(_ pipeline: PipelineCase) {
        guard case .valid = PipelineFile.parse(pipeline.yaml) else {
            Issue.record("\(pipeline.name) should parse: \(pipeline.actual())")
            return
        }
        #expect(pipeline.actual() == pipeline.expected)
    }

    @Test(arguments: PipelineCase.invalid)
    func invalidFileIsDiagnosed(_ pipeline: PipelineCase) {
        #expect(!pipeline.expected.isEmpty)
        #expect(pipeline.actual() == pipeline.expected)
    }

    @Test func theTableIsThere() {
        #expect(PipelineCase.valid.count >= 20)
        #expect(PipelineCase.invalid.count >= 30)
    }
}

@Suite struct PipelineSafetyTests {
    @Test func readOnlyPathsMustBeAllowedByTheServer() throws {
        let yaml = "jobs:\n  t:\n    build: .#t\n    read-only-paths: [/etc/ssl/certs, /srv/data]\n"
        guard case .valid(let spec) = PipelineFile.parse(yaml) else {
            Issue.record("expected a valid file")
            return
        }
        var limits = JobLimits.standard
        limits.allowedReadOnlyPaths = ["/etc/ssl/certs"]
        guard case .invalid(let diagnostics) = BuildPlan.make(spec, for: .push(.branch("main")), limits: limits) else {
            Issue.record("expected a refusal")
            return
        }
        #expect(
            diagnostics.map(\.message) == [
                "job 't' asks to see /srv/data, which this server does not allow (it allows /etc/ssl/certs); add it to nix.allowed-read-only-paths"
            ])
        limits.allowedReadOnlyPaths = ["/etc/ssl/certs", "/srv/data"]
        guard case .jobs(let jobs) = BuildPlan.make(spec, for: .push(.branch("main")), limits: limits) else {
            Issue.record("expected jobs")
            return
        }
        #expect(jobs.first?.constraints.readOnlyPaths == ["/etc/ssl/certs", "/srv/data"])
    }

    @Test func anImageGoesOnlyToAConfiguredRegistry() throws {
        let yaml = "jobs:\n  app:\n    build: .#image\n    image: {repository: 127.0.0.1:5000/team/app, tags: [\"{build}\", \"v{commit}\", latest, \"{build}\"]}\n"
        guard case .valid(let spec) = PipelineFile.parse(yaml) else {
            Issue.record("expected a valid file")
            return
        }
        var limits = JobLimits.standard
        limits.registryHosts = ["registry.example.org"]
        guard case .invalid(let diagnostics) = BuildPlan.make(spec, for: .push(.branch("main")), limits: limits) else {
            Issue.record("expected a refusal")
            return
        }
        #expect(
            diagnostics.map(\.message) == [
                "job 'app' pushes to 127.0.0.1:5000, which is not a registry of this server (its registries are registry.example.org); configure registries.NAME.host"
            ])
        limits.registryHosts = ["127.0.0.1:5000"]
        guard case .jobs(let jobs) = BuildPlan.make(spec, for: .push(.branch("main")), limits: limits) else {
            Issue.record("expected jobs")
            return
        }
        let image = try #require(jobs.first?.image)
        #expect(image.host == "127.0.0.1:5000")
        #expect(image.path == "team/app")
        let date = Date(timeIntervalSince1970: 1_796_022_902)  // 2026-11-30 07:15:02 UTC
        let values = ImageSpec.Placeholders(build: "42", timestamp: ImageSpec.Placeholders.timestamp(date), commit: "0123456789ab")
        #expect(image.tags(values) == ["42", "v0123456789ab", "latest"])
        #expect(ImageSpec.Placeholders.timestamp(date) == "20261130-071502")
    }

    @Test func everyProblemIsReportedNotJustTheFirst() {
        let yaml = "jobs:\n  a:\n    bulid: .#a\n  b:\n    build: .#b\n    timeout: forever\n"
        guard case .invalid(let diagnostics) = PipelineFile.parse(yaml) else {
            Issue.record("expected diagnostics")
            return
        }
        #expect(diagnostics.map { "\($0.line):\($0.column)" } == ["3:5", "6:14"])
        #expect(diagnostics.first?.formatted(file: ".kiln.yml") == ".kiln.yml:3:5: unknown key 'bulid' in 'jobs.a' — did you mean 'build'?")
    }

    @Test func oversizedFileIsRefusedBeforeParsing() {
        let bytes = [UInt8](repeating: UInt8(ascii: "#"), count: PipelineFile.maxBytes + 1)
        guard case .invalid(let diagnostics) = PipelineFile.parse(bytes) else {
            Issue.record("expected refusal")
            return
        }
        #expect(diagnostics.map(\.code) == [.tooLarge])
        #expect(diagnostics.first?.message == "pipeline file .kiln.yml is 256 KiB; the limit is 256 KiB")
    }

    static func billionLaughs() -> String {
        var yaml = "a0: &a0 [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n"
        for level in 1...9 {
            yaml += "a\(level): &a\(level) [\(Array(repeating: "*a\(level - 1)", count: 10).joined(separator: ","))]\n"
        }
        return yaml + "jobs:\n  x:\n    build: .#x\n"
    }

    @Test(.timeLimit(.minutes(1))) func billionLaughsIsRefusedByTheBudget() {
        let yaml = Self.billionLaughs()
        #expect(yaml.utf8.count < 1024)
        // How fast it is refused is a benchmark's figure (make bench); here, that it is, by its budget.
        guard case .invalid(let diagnostics) = PipelineFile.parse(yaml) else {
            Issue.record("expected refusal")
            return
        }
        #expect(diagnostics.map(\.code) == [.budget])
    }

    @Test func aliasAsMappingKeyBombIsRefused() {
        // Yams hashes mapping keys while composing; an aliased key must be stopped before that.
        var yaml = "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n"
        for level in 1...8 {
            yaml += "a\(level): &a\(level) [\(Array(repeating: "*a\(level - 1)", count: 10).joined(separator: ","))]\n"
        }
        yaml += "? *a8\n: 1\n"
        guard case .invalid(let diagnostics) = PipelineFile.parse(yaml) else {
            Issue.record("expected refusal")
            return
        }
        #expect(diagnostics.map(\.code) == [.budget])
    }

    @Test func deepNestingIsRefused() {
        let yaml = String(repeating: "[", count: 100) + String(repeating: "]", count: 100)
        guard case .invalid(let diagnostics) = PipelineFile.parse(yaml) else {
            Issue.record("expected refusal")
            return
        }
        #expect(diagnostics.map(\.code) == [.budget])
    }

    @Test func invalidUTF8IsRefused() {
        guard case .invalid(let diagnostics) = PipelineFile.parse([0x6a, 0x6f, 0xff, 0xfe]) else {
            Issue.record("expected refusal")
            return
        }
        #expect(diagnostics.map(\.code) == [.notUTF8])
    }
}

@Suite struct ValueSyntaxTests {
    @Test(arguments: [("30s", 30), ("5m", 300), ("1h", 3600), ("1h30m", 5400), ("2h15m10s", 8110), ("90m", 5400)])
    func validDurations(text: String, seconds: Int64) {
        #expect(KilnDuration.parse(text) == .seconds(seconds))
    }

    @Test(arguments: ["", "30", "m", "1m1h", "1h1h", "0s", "-5m", "1.5h", "5 m", "1d", "99999999999h"])
    func invalidDurations(text: String) {
        #expect(KilnDuration.parse(text) == nil)
    }

    @Test func daysOnlyWhereAllowed() {
        #expect(KilnDuration.parse("30d", allowDays: true) == .seconds(30 * 86400))
        #expect(KilnDuration.parse("1d12h", allowDays: true) == .seconds(36 * 3600))
        #expect(KilnDuration.parse("12h1d", allowDays: true) == nil)
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
        ("**/*.nix", "a.nix", true), ("**/*.nix", "x/y/a.nix", true), ("**/*.nix", "a.nixx", false),
        ("docs/**", "docs/a/b.md", true), ("docs/**", "src/docs/a.md", false), ("src/**/test.nix", "src/test.nix", true),
        ("src/**/test.nix", "src/a/b/test.nix", true), ("*.md", "docs/a.md", false),
    ])
    func globs(pattern: String, name: String, matches: Bool) {
        #expect(Glob(pattern).matches(name) == matches)
    }

    @Test(arguments: [("512MiB", 512 << 20), ("512M", 512 << 20), ("4GiB", 4 << 30), ("4G", 4 << 30), ("2GB", 2 << 30), ("1024", 1024), ("64KiB", 64 << 10)])
    func sizes(text: String, bytes: Int) {
        #expect(ByteCount.parse(text) == bytes)
    }

    @Test(arguments: ["", "lots", "-1G", "1.5G", "4 PB", "0"])
    func invalidSizes(text: String) {
        #expect(ByteCount.parse(text) == nil)
    }
}
