import Foundation
import KilnCore
import KilnForges
import KilnTesting
import Testing

@testable import KilnApp
import KilnPipeline
import KilnNix
import KilnStore

@Suite struct ConfigurationTests {
    /// Writes `yaml` as kiln.yaml beside a secret and a token file, and loads it.
    func load(_ yaml: String, environment: [String: String] = [:]) throws -> Result<KilnConfiguration, ConfigurationError> {
        let directory = try TemporaryDirectory("kiln-config")
        defer { directory.remove() }
        try "secret\n".write(toFile: directory.appending("webhook-secret"), atomically: true, encoding: .utf8)
        try "token".write(toFile: directory.appending("token"), atomically: true, encoding: .utf8)
        try "".write(toFile: directory.appending("empty"), atomically: true, encoding: .utf8)
        let path = directory.appending("kiln.yaml")
        try yaml.write(toFile: path, atomically: true, encoding: .utf8)
        do {
            return .success(try KilnConfiguration.load(path: path, environment: environment))
        } catch {
            // Drop the temporary directory from messages so expectations can be exact.
            return .failure(ConfigurationError(problems: error.problems.map {
                $0.replacingOccurrences(of: directory.path + "/", with: "")
            }))
        }
    }

    static let minimal = """
        forges:
          github:
            type: github
            webhook-secret-files: [webhook-secret]
            token-file: token
        repositories:
          - forge: github
            name: octo/hello
            clone-url: https://github.com/octo/hello.git
        """

    @Test func minimalFileGetsTheDocumentedDefaults() throws {
        let configuration = try load(Self.minimal).get()
        #expect(configuration.server.host == "127.0.0.1" && configuration.server.port == 8080)
        #expect(configuration.server.publicURL == "http://127.0.0.1:8080")
        #expect(configuration.server.maxBodyBytes == 26_214_400)
        #expect(configuration.nix.maxParallelJobs == 2)
        var limits = JobLimits(defaultTimeout: .seconds(1800), maxTimeout: .seconds(3600), defaultMaxSilent: .seconds(600))
        limits.registryHosts = []  // no registries: no job may push an image
        limits.allowedReadOnlyPaths = []  // nor see a host path
        #expect(configuration.nix.limits == limits)
        #expect(configuration.nix.settings.evalTimeout == .seconds(600))
        #expect(configuration.nix.settings.evalMaxMemoryKilobytes == nil)
        #expect(configuration.nix.settings.maxParallelEvaluations == 1)
        #expect(configuration.forges.first?.settings.webhookSecrets.map(\.value) == ["secret"])
        #expect(configuration.forges.first?.settings.token?.value == "token")
        #expect(configuration.forges.first?.settings.apiURL == "https://api.github.com")
        #expect(configuration.repositories.first?.forks == .requireApproval)
        #expect(configuration.storage.dataDirectory.hasSuffix("/.kiln"))
    }

    static let problems: [(yaml: String, expected: String)] = [
        (minimal.replacingOccurrences(of: "token-file: token", with: "token-file: /run/secrets/github-token"),
            "kiln.yaml:5:17: forges.github.token-file: no such file /run/secrets/github-token"),
        (minimal.replacingOccurrences(of: "token-file: token", with: "token-file: empty"),
            "kiln.yaml:5:17: forges.github.token-file: empty is empty"),
        ("nix:\n  default-timeout: 30 minutes\n" + minimal,
            "kiln.yaml:2:20: nix.default-timeout: '30 minutes' is not a duration; write it like 30s, 5m, 1h or 1h30m"),
        ("server:\n  lisen: 0.0.0.0:80\n" + minimal, "kiln.yaml:2:3: server.lisen: unknown key 'lisen' in 'server' — did you mean 'listen'?"),
        ("server:\n  listen: localhost\n" + minimal, "kiln.yaml:2:11: server.listen: 'localhost' is not HOST:PORT (for example 127.0.0.1:8080)"),
        (minimal.replacingOccurrences(of: "type: github", with: "type: gitlub"),
            "kiln.yaml:3:11: forges.github.type: 'gitlub' is not a forge type; one of: github, gitlab, bitbucket-cloud, bitbucket-server, gitea"),
        (minimal.replacingOccurrences(of: "    token-file: token\n", with: "    token-file: token\n    signing-token-files: [token]\n"),
            "kiln.yaml:6:26: forges.github.signing-token-files: applies only to gitlab forges, not github"),
        (minimal.replacingOccurrences(of: "    token-file: token\n", with: "    token-file: token\n    status-api: checks\n"),
            "kiln.yaml:6:17: forges.github.status-api: checks needs a GitHub App: set app-id and app-private-key-file"),
        (minimal.replacingOccurrences(of: "type: github", with: "type: gitea"),
            "kiln.yaml:3:5: forges.github.api-url: is required for gitea forges: the instance's URL"),
        (minimal.replacingOccurrences(of: "    token-file: token\n", with: "    token-file: token\n    app-id: \"123\"\n    app-private-key-file: missing.pem\n"),
            "kiln.yaml:7:27: forges.github.app-private-key-file: no such file missing.pem"),
        (minimal.replacingOccurrences(of: "    token-file: token\n", with: "    token-file: token\n    app-id: \"123\"\n    app-private-key-file: token\n"),
            "kiln.yaml:7:27: forges.github.app-private-key-file: is not an RSA private key in PEM form"),
        (minimal + "\n    pull-requests: rebase\n", "kiln.yaml:10:20: repositories[0].pull-requests: 'rebase' is not one of: merge, head"),
        (minimal.replacingOccurrences(of: "https://github.com/octo/hello.git", with: "https://me:pw@github.com/octo/hello.git"),
            "kiln.yaml:9:16: repositories[0].clone-url: credentials do not belong in clone-url; put the token in the forge's token-file"),
        (minimal.replacingOccurrences(of: "https://github.com/octo/hello.git", with: "git://github.com/octo/hello.git"),
            "kiln.yaml:9:16: repositories[0].clone-url: 'git://github.com/octo/hello.git' is not an https://, ssh:// or file:// URL"),
        (minimal.replacingOccurrences(of: "- forge: github", with: "- forge: gihub"),
            "kiln.yaml:7:12: repositories[0].forge: no forge named 'gihub' under forges"),
        (minimal.replacingOccurrences(of: "    token-file: token\n", with: ""),
            "kiln.yaml:3:5: forges.github.token-file: is required to post statuses; set it, or set status-api: none"),
        (minimal.replacingOccurrences(of: "    webhook-secret-files: [webhook-secret]\n", with: ""),
            "kiln.yaml:3:5: forges.github.webhook-secret-files: is required: list the files holding the webhook secret(s); Kiln refuses unsigned webhooks"),
        (minimal.replacingOccurrences(of: "webhook-secret-files: [webhook-secret]", with: "webhook-secret-files: []"),
            "kiln.yaml:3:5: forges.github.webhook-secret-files: is required: list the files holding the webhook secret(s); Kiln refuses unsigned webhooks"),
        ("nix:\n  options:\n    sandbox: false\n" + minimal,
            "kiln.yaml:3:14: nix.options.sandbox: nix.options may not set 'sandbox': Kiln always sets accept-flake-config = false, allow-import-from-derivation = false, restrict-eval = true, sandbox = true, sandbox-fallback = false, with the work tree as the only search path"),
        ("nix:\n  options:\n    accept-flake-config: true\n" + minimal,
            "kiln.yaml:3:26: nix.options.accept-flake-config: nix.options may not set 'accept-flake-config': Kiln always sets accept-flake-config = false, allow-import-from-derivation = false, restrict-eval = true, sandbox = true, sandbox-fallback = false, with the work tree as the only search path"),
        ("nix:\n  options:\n    build-use-sandbox: false\n" + minimal,
            "kiln.yaml:3:24: nix.options.build-use-sandbox: nix.options may not set 'build-use-sandbox': Kiln always sets accept-flake-config = false, allow-import-from-derivation = false, restrict-eval = true, sandbox = true, sandbox-fallback = false, with the work tree as the only search path"),
        ("nix:\n  max-parallel-jobs: lots\n" + minimal, "kiln.yaml:2:22: nix.max-parallel-jobs: 'lots' must be a whole number from 1 to 256"),
        ("nix:\n  max-parallel-evals: 0\n" + minimal, "kiln.yaml:2:23: nix.max-parallel-evals: '0' must be a whole number from 1 to 64"),
        ("server:\n  private: yes\n" + minimal, "kiln.yaml:2:12: server.private: 'yes' is not true or false"),
        (minimal.replacingOccurrences(of: "  github:\n    type: github", with: "  api:\n    type: github"),
            "kiln.yaml:3:5: forges.api: forge name 'api' is Kiln's own, for ad-hoc builds; choose another"),
        ("build-service:\n  git-hosts: [\"ftp://x\"]\n" + minimal, "kiln.yaml:2:15: build-service.git-hosts[0]: 'ftp://x' is neither a host (github.com) nor an origin (http://127.0.0.1:8081)"),
        ("nix:\n  allowed-read-only-paths: [/tmp]\n" + minimal, "kiln.yaml:2:29: nix.allowed-read-only-paths[0]: /tmp is writable by everyone; a build could change it"),
        ("nix:\n  allowed-read-only-paths: [/no/such/path]\n" + minimal, "kiln.yaml:2:29: nix.allowed-read-only-paths[0]: no such path /no/such/path"),
        ("registries:\n  main:\n    host: https://registry.example.org\n" + minimal,
            "kiln.yaml:3:11: registries.main.host: 'https://registry.example.org' is not a registry host such as registry.example.org or 127.0.0.1:5000 (no scheme, no path)"),
        ("registries:\n  main:\n    host: registry.example.org\n    auth-file: missing.json\n" + minimal,
            "kiln.yaml:4:16: registries.main.auth-file: cannot read missing.json"),
        ("registries:\n  main:\n    host: registry.example.org\n    auth-file: token\n" + minimal,
            "kiln.yaml:4:16: registries.main.auth-file: token is not a containers auth.json ({\"auths\": {\"registry.example.org\": {\"auth\": \"…\"}}})"),
        ("registries:\n  main:\n    host: registry.example.org\n    fallback: spare\n" + minimal,
            "kiln.yaml:4:15: registries.main.fallback: 'spare' must name another entry of registries"),
        ("registries:\n  main:\n    host: registry.example.org\n    tls-verify: maybe\n" + minimal,
            "kiln.yaml:4:17: registries.main.tls-verify: 'maybe' must be true or false"),
    ]

    @Test func registriesAreRead() throws {
        let yaml = """
            registries:
              main:
                host: registry.example.org
                fallback: spare
              spare:
                host: 127.0.0.1:5000
                tls-verify: false
                attempts: 2

            """ + Self.minimal
        let configuration = try load(yaml).get()
        #expect(configuration.registries.map(\.name) == ["main", "spare"])
        #expect(configuration.registries[0].tlsVerify && configuration.registries[0].attempts == 4)
        #expect(configuration.registries[0].fallback == "spare")
        #expect(!configuration.registries[1].tlsVerify && configuration.registries[1].attempts == 2)
        #expect(configuration.nix.limits.registryHosts == ["registry.example.org", "127.0.0.1:5000"])
        #expect(try load(Self.minimal).get().nix.limits.registryHosts == [])
    }

    @Test func evaluationLimitsAreRead() throws {
        let configuration = try load("nix:\n  eval-timeout: 5m\n  eval-max-memory: 2GiB\n  max-parallel-evals: 2\n" + Self.minimal).get()
        #expect(configuration.nix.settings.evalTimeout == .seconds(300))
        #expect(configuration.nix.settings.evalMaxMemoryKilobytes == 2 << 20)
        #expect(configuration.nix.settings.maxParallelEvaluations == 2)
        guard case .failure(let error) = try load("nix:\n  eval-max-memory: lots\n" + Self.minimal) else {
            Issue.record("expected a configuration error")
            return
        }
        #expect(error.problems.first?.hasPrefix("kiln.yaml:2:20: nix.eval-max-memory:") == true, "\(error.problems)")
    }

    @Test func aPostgreSQLDatabaseIsReadWithItsPasswordFromAFile() throws {
        let configuration = try load(
            "storage: {database: \"postgres://kiln@db.example.org:6543/kiln?sslmode=disable\", database-password-file: token}\n" + Self.minimal
        ).get()
        #expect(
            configuration.storage.database
                == PostgresLocation(host: "db.example.org", port: 6543, username: "kiln", password: "token", database: "kiln"))
        #expect(try load(Self.minimal).get().storage.database == nil)
        for bad in ["postgres://kiln:secret@db/kiln", "mysql://kiln@db/kiln", "postgres://db/kiln", "postgres://kiln@db/", "postgres://kiln@db/k?sslmode=require"] {
            guard case .failure(let error) = try load("storage: {database: \"\(bad)\"}\n" + Self.minimal) else {
                Issue.record("expected \(bad) to be refused")
                continue
            }
            #expect(error.problems.first?.contains("storage.database: '\(bad)' is not postgres://USER@HOST[:PORT]/DATABASE") == true, "\(error.problems)")
        }
    }

    @Test func sshOptionsAreOneWordEach() throws {
        let configuration = try load("nix:\n  ssh-options: [-p, \"2222\"]\n" + Self.minimal).get()
        #expect(configuration.nix.settings.sshOptions == ["-p", "2222"])
        guard case .failure(let error) = try load("nix:\n  ssh-options: [\"-p 2222\"]\n" + Self.minimal) else {
            Issue.record("expected a configuration error")
            return
        }
        #expect(error.problems.first?.contains("'-p 2222' must be one word without spaces") == true, "\(error.problems)")
    }

    @Test func reconcileIntervalIsReadOrTurnedOff() throws {
        #expect(try load(Self.minimal).get().reconcileInterval == .seconds(600))
        #expect(try load("reconcile: {interval: 30s}\n" + Self.minimal).get().reconcileInterval == .seconds(30))
        #expect(try load("reconcile: {interval: \"off\"}\n" + Self.minimal).get().reconcileInterval == nil)
        guard case .failure(let error) = try load("reconcile: {interval: 0s}\n" + Self.minimal) else {
            Issue.record("expected a configuration error")
            return
        }
        #expect(error.problems.first?.contains("reconcile.interval: '0s' is not a duration of at least 1s, or off") == true, "\(error.problems)")
    }

    @Test(arguments: problems)
    func problemNamesItsKeyPath(yaml: String, expected: String) throws {
        guard case .failure(let error) = try load(yaml) else {
            Issue.record("expected a configuration error")
            return
        }
        #expect(error.problems.first == expected, "all problems: \(error.problems)")
    }

    @Test func everyProblemIsReported() throws {
        let yaml = "server:\n  listen: nowhere\nnix:\n  max-timeout: forever\n" + Self.minimal.replacingOccurrences(of: "token-file: token", with: "token-file: missing")
        guard case .failure(let error) = try load(yaml) else {
            Issue.record("expected a configuration error")
            return
        }
        #expect(error.problems.count == 3)
    }

    @Test func environmentOverridesScalars() throws {
        let configuration = try load(
            Self.minimal,
            environment: [
                "KILN_SERVER_LISTEN": "0.0.0.0:9090", "KILN_NIX_MAX_PARALLEL_JOBS": "4",
                "KILN_REPOSITORIES_0_CLONE_URL": "ssh://git@github.com/octo/hello.git",
            ]
        ).get()
        #expect(configuration.server.host == "0.0.0.0" && configuration.server.port == 9090)
        #expect(configuration.nix.maxParallelJobs == 4)
        #expect(configuration.repositories.first?.cloneURL == "ssh://git@github.com/octo/hello.git")
    }

    @Test func badEnvironmentValueNamesTheVariable() throws {
        guard case .failure(let error) = try load(Self.minimal, environment: ["KILN_NIX_DEFAULT_TIMEOUT": "soon"]) else {
            Issue.record("expected a configuration error")
            return
        }
        #expect(error.problems == ["KILN_NIX_DEFAULT_TIMEOUT (overrides nix.default-timeout): 'soon' is not a duration; write it like 30s, 5m, 1h or 1h30m"])
    }

    @Test func relativePathsAreRelativeToTheFile() throws {
        let yaml = Self.minimal.replacingOccurrences(of: "https://github.com/octo/hello.git", with: "file:repos/hello")
            + "\nstorage:\n  data-dir: state\n"
        let configuration = try load(yaml).get()
        #expect(configuration.repositories.first?.cloneURL.hasSuffix("/repos/hello") == true)
        #expect(configuration.repositories.first?.cloneURL.hasPrefix("file:///") == true)
        #expect(configuration.storage.dataDirectory.hasSuffix("/state"))
    }

    @Test func everyForgeTypeLoadsWithItsDefaults() throws {
        let yaml = """
            server: {admin-token-file: token}
            forges:
              hub: {type: github, webhook-secret-files: [webhook-secret], token-file: token}
              lab: {type: gitlab, webhook-secret-files: [webhook-secret], token-file: token, token-kind: bearer}
              cloud: {type: bitbucket-cloud, webhook-secret-files: [webhook-secret], token-file: token}
              dc: {type: bitbucket-server, api-url: "https://bitbucket.example.org/", webhook-secret-files: [webhook-secret], token-file: token}
              tea: {type: gitea, api-url: "https://codeberg.org", webhook-secret-files: [webhook-secret], token-file: token}
            repositories:
              - {forge: lab, name: group/sub/project, clone-url: "https://gitlab.com/group/sub/project.git", pull-requests: head, forks: build}
              - {forge: dc, name: "~alice/tool", clone-url: "ssh://git@bitbucket.example.org:7999/~alice/tool.git"}
            """
        let configuration = try load(yaml).get()
        #expect(configuration.server.adminToken?.value == "token")
        #expect(configuration.forges.map(\.settings.apiURL) == [
            "https://api.github.com", "https://gitlab.com", "https://api.bitbucket.org", "https://bitbucket.example.org",
            "https://codeberg.org",
        ])
        guard case .gitlab(let lab)? = configuration.forges.first(where: { $0.name == "lab" })?.settings,
            case .bitbucketCloud(_, let gitURL)? = configuration.forges.first(where: { $0.name == "cloud" })?.settings
        else {
            Issue.record("each forge's settings are its own kind's")
            return
        }
        #expect(lab.bearerToken)
        #expect(gitURL == "https://bitbucket.org")
        #expect(configuration.repositories.map(\.pullRequests) == [.head, .merge])
        #expect(configuration.repositories.map(\.forks) == [.build, .requireApproval])
    }

    @Test func theShippedConfigurationIsValid() throws {
        // config/kiln.yaml names files that `make example` creates; check it with them present.
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let text = try String(contentsOf: root.appendingPathComponent("config/kiln.yaml"), encoding: .utf8)
        let yaml = text.replacingOccurrences(of: "../.kiln/example-webhook-secret", with: "webhook-secret")
        let configuration = try load(yaml).get()
        #expect(configuration.forges.map(\.statusAPI) == [.none])
        #expect(configuration.nix.settings.options["substituters"] == "")
    }
}
