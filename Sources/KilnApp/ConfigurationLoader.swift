import Foundation
import KilnCore
import KilnForges
import KilnNix
import KilnPipeline
import KilnStore

extension KilnConfiguration {
    /// Reads and validates the configuration file at `path`.
    ///
    /// Every scalar key can be overridden by an environment variable named after its path:
    /// `server.listen` by `KILN_SERVER_LISTEN`, `forges.github.token-file` by
    /// `KILN_FORGES_GITHUB_TOKEN_FILE`. Relative paths are resolved against the directory of
    /// the configuration file. Secrets are read from their files here, once.
    public static func load(path: String, environment: [String: String] = ProcessInfo.processInfo.environment)
        throws(ConfigurationError) -> KilnConfiguration
    {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ConfigurationError(problems: ["\(path): cannot read the configuration file (does it exist?)"])
        }
        let directory = URL(fileURLWithPath: path).deletingLastPathComponent().path
        return try parse(Array(data), file: path, directory: directory, environment: environment)
    }

    /// Validates configuration file contents `bytes` (named `file` in messages; relative paths
    /// resolve against `directory`). Any bytes give a configuration or every problem found.
    public static func parse(_ bytes: [UInt8], file path: String, directory: String, environment: [String: String])
        throws(ConfigurationError) -> KilnConfiguration
    {
        let root: YAMLNode
        switch YAMLDocument.load(bytes, what: "configuration file", maxBytes: 1 << 20) {
        case .failure(let problem):
            throw ConfigurationError(problems: ["\(path):\(problem.line):\(problem.column): \(problem.message)"])
        case .success(let node): root = node
        }
        var reader = ConfigReader(file: path, directory: directory, environment: environment)
        let configuration = reader.configuration(root)
        guard reader.problems.isEmpty, let configuration else {
            throw ConfigurationError(problems: reader.problems.isEmpty ? ["\(path): invalid configuration"] : reader.problems)
        }
        return configuration
    }
}

/// Reads the configuration tree, collecting every problem.
struct ConfigReader {
    let file: String
    let directory: String
    let environment: [String: String]
    var yaml = YAMLReader()
    var ownProblems: [String] = []

    init(file: String, directory: String, environment: [String: String]) {
        self.file = file
        self.directory = directory
        self.environment = environment
    }

    var problems: [String] {
        yaml.problems.map { problem in
            let key = problem.path.isEmpty ? "" : "\(problem.path): "
            return "\(file):\(problem.line):\(problem.column): \(key)\(problem.message)"
        } + ownProblems
    }

    // MARK: The tree

    mutating func configuration(_ root: YAMLNode) -> KilnConfiguration? {
        let sections = root.isNull ? [:] : mapping(root, ["server", "storage", "nix", "forges", "repositories", "registries", "build-service", "reconcile"])
        let server = self.server(sections["server"], path: ["server"])
        let storage = self.storage(sections["storage"], path: ["storage"])
        let nix = self.nix(sections["nix"], path: ["nix"])
        let forges = self.forges(sections["forges"], path: ["forges"])
        let repositories = self.repositories(sections["repositories"], path: ["repositories"], forges: forges ?? [])
        let registries = self.registries(sections["registries"], path: ["registries"])
        let buildService = self.buildService(sections["build-service"], path: ["build-service"])
        let reconcileInterval = self.reconcileInterval(sections["reconcile"], path: ["reconcile"])
        guard let server, let storage, var nix, let forges, let repositories, let registries else { return nil }
        nix.limits.registryHosts = Set(registries.map(\.host))
        var configuration = KilnConfiguration(
            server: server, storage: storage, nix: nix, forges: forges, repositories: repositories, registries: registries,
            buildService: buildService)
        configuration.reconcileInterval = reconcileInterval
        return configuration
    }

    /// `reconcile.interval`: a duration of at least a second, or `off`; 10 minutes when not given.
    mutating func reconcileInterval(_ node: YAMLNode?, path: [String]) -> Duration? {
        let keys = mapping(node, ["interval"])
        guard let text = text(keys, "interval", path) else { return .seconds(600) }
        if text == "off" { return nil }
        guard let value = KilnDuration.parse(text), value >= .seconds(1) else {
            report(keys["interval"], path + ["interval"], "'\(text)' is not a duration of at least 1s, or off; write it like 10m")
            return .seconds(600)
        }
        return value
    }

    mutating func server(_ node: YAMLNode?, path: [String]) -> KilnConfiguration.Server? {
        let keys = mapping(node, Self.serverKeys)
        let listenText = text(keys, "listen", path) ?? "127.0.0.1:8080"
        guard let (host, port) = Self.hostAndPort(listenText) else {
            report(keys["listen"], path + ["listen"], "'\(listenText)' is not HOST:PORT (for example 127.0.0.1:8080)")
            return nil
        }
        var publicURL = text(keys, "public-url", path) ?? "http://\(host.contains(":") ? "[\(host)]" : host):\(port)"
        if publicURL.hasSuffix("/") { publicURL.removeLast() }
        if !(publicURL.hasPrefix("http://") || publicURL.hasPrefix("https://")) || URL(string: publicURL)?.host == nil {
            report(keys["public-url"], path + ["public-url"], "'\(publicURL)' is not an http(s) URL")
        }
        let maxBody = integer(keys, "max-body-bytes", path, in: 1024...(1 << 30)) ?? 26_214_400
        let concurrent = integer(keys, "max-concurrent-webhooks", path, in: 1...4096) ?? 64
        let adminToken = text(keys, "admin-token-file", path).flatMap { readSecret($0, keys["admin-token-file"], path + ["admin-token-file"]) }
        let eventsSocket = text(keys, "events-socket", path).map(resolve)
        if let eventsSocket, eventsSocket.utf8.count > 100 {
            report(keys["events-socket"], path + ["events-socket"], "'\(eventsSocket)' is too long for a Unix socket path (at most 100 bytes)")
        }
        let privateText = text(keys, "private", path) ?? "false"
        if !["true", "false"].contains(privateText) {
            report(keys["private"], path + ["private"], "'\(privateText)' is not true or false")
        }
        return KilnConfiguration.Server(
            host: host, port: port, publicURL: publicURL, maxBodyBytes: maxBody, maxConcurrentWebhooks: concurrent,
            adminToken: adminToken, eventsSocket: eventsSocket,
            maxEventStreams: integer(keys, "max-event-streams", path, in: 1...100_000) ?? 1000, isPrivate: privateText == "true")
    }

    mutating func storage(_ node: YAMLNode?, path: [String]) -> KilnConfiguration.Storage? {
        let keys = mapping(node, Self.storageKeys)
        let dataDirectory = resolve(text(keys, "data-dir", path) ?? ".kiln")
        let maxLog = integer(keys, "max-log-bytes", path, in: 4096...(1 << 40)) ?? 64 << 20
        var retention: Duration = .seconds(90 * 86400)
        if let text = text(keys, "retention", path) {
            if let value = KilnDuration.parse(text, allowDays: true) {
                retention = value
            } else {
                report(keys["retention"], path + ["retention"], "'\(text)' is not a duration; write it like 30d or 12h")
            }
        }
        var storage = KilnConfiguration.Storage(dataDirectory: dataDirectory, maxLogBytes: maxLog, retention: retention)
        storage.keepOutputs = integer(keys, "keep-outputs", path, in: 0...1000) ?? 3
        if let text = text(keys, "min-free", path) {
            if let bytes = ByteCount.parse(text) {
                storage.minFree = Int64(bytes)
            } else {
                report(keys["min-free"], path + ["min-free"], "'\(text)' is not a size; write it like 10GiB or 500MiB")
            }
        }
        if let url = text(keys, "database", path) {
            let password = text(keys, "database-password-file", path).flatMap {
                readSecret($0, keys["database-password-file"], path + ["database-password-file"])
            }
            if let location = PostgresLocation(url: url, password: password?.value) {
                storage.database = location
            } else {
                report(
                    keys["database"], path + ["database"],
                    "'\(url)' is not postgres://USER@HOST[:PORT]/DATABASE (a password goes in database-password-file; only sslmode=disable is understood)")
            }
        } else if keys["database-password-file"] != nil {
            report(keys["database-password-file"], path + ["database-password-file"], "database-password-file needs storage.database")
        }
        storage.logsDirectory = text(keys, "logs-dir", path).map(resolve)
        return storage
    }

    mutating func readSecret(_ file: String, _ node: YAMLNode?, _ path: [String]) -> Secret? {
        let resolved = resolve(file)
        guard FileManager.default.fileExists(atPath: resolved) else {
            report(node, path, "no such file \(resolved)")
            return nil
        }
        guard let data = FileManager.default.contents(atPath: resolved) else {
            report(node, path, "cannot read \(resolved); check its permissions")
            return nil
        }
        let value = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        guard !value.isEmpty else {
            report(node, path, "\(resolved) is empty")
            return nil
        }
        return Secret(value)
    }

    func resolve(_ path: String) -> String {
        path.hasPrefix("/") ? path : URL(fileURLWithPath: directory).appendingPathComponent(path).standardized.path
    }

    static func hostAndPort(_ text: String) -> (String, Int)? {
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]), (0...65535).contains(port)
        else { return nil }
        var host = String(text[..<colon])
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        return host.isEmpty ? nil : (host, port)
    }

    // MARK: Reading with environment overrides

    /// The keys of each section, as the NixOS module's options name them too (a test compares).
    static let serverKeys = [
        "listen", "public-url", "max-body-bytes", "max-concurrent-webhooks", "max-event-streams", "admin-token-file", "events-socket",
        "private",
    ]
    static let storageKeys = [
        "data-dir", "max-log-bytes", "retention", "keep-outputs", "min-free", "database", "database-password-file", "logs-dir",
    ]
    static let nixKeys = [
        "binary", "max-parallel-jobs", "default-timeout", "max-timeout", "default-max-silent", "eval-timeout", "eval-max-memory",
        "max-parallel-evals", "builders", "options", "cache", "warm", "allowed-read-only-paths", "sandbox-shell",
        "ssh-options",
    ]
    static let cacheKeys = ["push-to", "secret-key-file", "required"]

    mutating func mapping(_ node: YAMLNode?, _ allowed: [String]) -> [String: YAMLNode] {
        guard let node, !node.isNull else { return [:] }
        return Dictionary((yaml.mapping(node, allowed: allowed) ?? []).map { ($0.key, $0.value) }, uniquingKeysWith: { a, _ in a })
    }

    static func environmentName(_ path: [String]) -> String {
        "KILN_"
            + path.map {
                $0.uppercased().replacingOccurrences(of: "-", with: "_").trimmingCharacters(in: CharacterSet(charactersIn: "[]"))
            }.joined(separator: "_")
    }

    /// A scalar as text: from its environment variable when set, else from the file.
    mutating func text(_ keys: [String: YAMLNode], _ key: String, _ path: [String], required: Bool = false) -> String? {
        let name = Self.environmentName(path + [key])
        if let value = environment[name] { return value }
        guard let node = keys[key], !node.isNull else {
            if required { ownProblems.append("\(file): \((path + [key]).joined(separator: ".")): is required") }
            return nil
        }
        guard let text = node.scalarText else {
            yaml.report(node, "'\(node.pathString)' must be a single value, not \(node.kind)", code: .wrongType)
            return nil
        }
        return text
    }

    mutating func integer(_ keys: [String: YAMLNode], _ key: String, _ path: [String], in range: ClosedRange<Int>) -> Int? {
        guard let text = text(keys, key, path) else { return nil }
        guard let value = Int(text), range.contains(value) else {
            report(keys[key], path + [key], "'\(text)' must be a whole number from \(range.lowerBound) to \(range.upperBound)")
            return nil
        }
        return value
    }

    mutating func duration(_ keys: [String: YAMLNode], _ key: String, _ path: [String]) -> Duration? {
        guard let text = text(keys, key, path) else { return nil }
        guard let value = KilnDuration.parse(text) else {
            report(keys[key], path + [key], "'\(text)' is not a duration; write it like 30s, 5m, 1h or 1h30m")
            return nil
        }
        return value
    }

    /// A problem at `node` (or, for a value from the environment, at its variable).
    mutating func report(_ node: YAMLNode?, _ path: [String], _ message: String) {
        let dotted = path.reduce(into: "") { text, part in
            if part.hasPrefix("[") || text.isEmpty { text += part } else { text += ".\(part)" }
        }
        let variable = Self.environmentName(path)
        if environment[variable] != nil {
            ownProblems.append("\(variable) (overrides \(dotted)): \(message)")
        } else if let node {
            ownProblems.append("\(file):\(node.line):\(node.column): \(dotted): \(message)")
        } else {
            ownProblems.append("\(file): \(dotted): \(message)")
        }
    }
}
