import Foundation
import Testing

@testable import KilnPipeline

@Suite struct PipelineFileTests {
    @Test func validFileDecodesEveryKey() throws {
        let result = PipelineFile.parse(
            """
            on:
              push:
                branches: [main, "release/*"]
                tags: "v*"
            jobs:
              hello:
                build: .#hello
              tests:
                build: [.#checks.x86_64-linux.unit, .#checks.x86_64-linux.lint]
                needs: hello
                timeout: 20m
                max-silent: 1h30m
            """)
        guard case .valid(let spec) = result else {
            Issue.record("expected valid, got \(result)")
            return
        }
        #expect(spec.triggers?.push?.branches?.map(\.pattern) == ["main", "release/*"])
        #expect(spec.triggers?.push?.tags?.map(\.pattern) == ["v*"])
        #expect(spec.triggers?.pullRequest == nil)
        #expect(spec.jobs.map(\.name) == ["hello", "tests"])
        #expect(spec.jobs[0].installables == [".#hello"])
        #expect(spec.jobs[1].installables == [".#checks.x86_64-linux.unit", ".#checks.x86_64-linux.lint"])
        #expect(spec.jobs[1].needs == ["hello"])
        #expect(spec.jobs[1].timeout == .seconds(1200))
        #expect(spec.jobs[1].maxSilent == .seconds(5400))
        #expect(spec.jobs[1].location == SourceLocation(line: 8, column: 3))
    }

    /// Invalid files and the exact first diagnostic each must produce.
    static let invalidCases: [(yaml: String, expected: String)] = [
        ("jobs:\n  hello:\n    bulid: .#hello\n", "3:5: unknown key 'bulid' in 'jobs.hello' — did you mean 'build'?"),
        ("jobs:\n  hello:\n    build: .#a\n    needs: [nope]\n", "4:13: job 'hello' needs 'nope', which is not a job in this file"),
        ("jobs:\n  a:\n    build: .#a\n    needs: b\n  b:\n    build: .#b\n    needs: a\n",
            "2:3: jobs depend on each other in a cycle: a → b → a"),
        ("jobs:\n  a:\n    build: .#a\n    needs: a\n", "4:12: job 'a' needs itself"),
        ("jobs:\n  a:\n    build: .#a\n    timeout: 30\n", "4:14: 'jobs.a.timeout': '30' is not a duration; write it like 30s, 5m, 1h or 1h30m (add a unit: '30s' or '30m')"),
        ("jobs:\n  a:\n    build: .#a\n    max-silent: soon\n", "4:17: 'jobs.a.max-silent': 'soon' is not a duration; write it like 30s, 5m, 1h or 1h30m"),
        ("jobs:\n  a:\n    build: 42\n", "3:12: 'jobs.a.build' must be a string, not a number (42)"),
        ("jobs:\n  a:\n    build: {x: 1}\n", "3:12: 'jobs.a.build' must be a string or a list of strings, not a mapping"),
        ("jobs:\n  a:\n    needs: []\n", "2:3: job 'a' has no 'build'; give a flake installable such as '.#a'"),
        ("jobs:\n  a:\n    build: \"--option\"\n", "3:12: installable '--option' starts with '-'; nix would read it as an option"),
        ("on:\n  psuh: {}\njobs:\n  a:\n    build: .#a\n", "2:3: unknown key 'psuh' in 'on' — did you mean 'push'?"),
        ("on:\n  push:\n    branches: main\n    tgs: [v1]\njobs:\n  a:\n    build: .#a\n", "4:5: unknown key 'tgs' in 'on.push' — did you mean 'tags'?"),
        ("jobs: [a, b]\n", "1:7: 'jobs' must be a mapping, not a list"),
        ("jobs:\n  a:\n    build: .#a\n  a:\n    build: .#b\n", "2:3: duplicate key 'a'; each key may appear once"),
        ("jobs:\n  a:\n    build: [.#a\n", "4:1: YAML syntax error: did not find expected ',' or ']'"),
        ("", "1:1: pipeline file is empty; it needs a 'jobs' mapping"),
        ("on:\n  push: {}\n", "1:1: pipeline file has no 'jobs'; add at least one job with a 'build'"),
        ("jobs:\n  \"bad name\":\n    build: .#a\n", "2:3: job name 'bad name' is not allowed; use letters, digits, '-', '_' and '.', start with a letter or digit, at most 40 characters"),
    ]

    @Test(arguments: invalidCases)
    func invalidFileReportsPosition(yaml: String, expected: String) {
        guard case .invalid(let diagnostics) = PipelineFile.parse(yaml) else {
            Issue.record("expected diagnostics for:\n\(yaml)")
            return
        }
        #expect(diagnostics.first?.description == expected)
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
        #expect(diagnostics[0].message == "pipeline file .kiln.yml is 256 KiB; the limit is 256 KiB" || diagnostics[0].message.hasSuffix("the limit is 256 KiB"))
    }

    @Test func billionLaughsIsRefusedFast() {
        var yaml = "a0: &a0 [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n"
        for level in 1...9 {
            let previous = Array(repeating: "*a\(level - 1)", count: 10).joined(separator: ",")
            yaml += "a\(level): &a\(level) [\(previous)]\n"
        }
        yaml += "jobs:\n  x:\n    build: .#x\n"
        #expect(yaml.utf8.count < 1024)
        let clock = ContinuousClock()
        var result: PipelineFile.Result?
        let elapsed = clock.measure { result = PipelineFile.parse(yaml) }
        guard case .invalid(let diagnostics) = result else {
            Issue.record("expected refusal")
            return
        }
        #expect(diagnostics.map(\.code) == [.budget])
        #expect(elapsed < .milliseconds(500), "refusing the alias bomb took \(elapsed)")
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
