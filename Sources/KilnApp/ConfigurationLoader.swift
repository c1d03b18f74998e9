import Foundation
import KilnCore
import KilnForges
import KilnNix
import KilnPipeline
import Yams

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
        let sections = root.isNull ? [:] : mapping(root, ["server", "storage", "nix", "forges", "repositories"])
        let server = self.server(sections["server"], path: ["server"])
        let storage = self.storage(sections["storage"], path: ["storage"])
        let nix = self.nix(sections["nix"], path: ["nix"])
        let forges = self.forges(sections["forges"], path: ["forges"])
        let repositories = self.repositories(sections["repositories"], path: ["repositories"], forges: forges ?? [])
        guard let server, let storage, let nix, let forges, let repositories else { return nil }
        return KilnConfiguration(server: server, storage: storage, nix: nix, forges: forges, repositories: repositories)
    }

    mutating func server(_ node: YAMLNode?, path: [String]) -> KilnConfiguration.Server? {
        let keys = mapping(
            node, ["listen", "public-url", "max-body-bytes", "max-concurrent-webhooks", "admin-token-file", "events-socket"])
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
        return KilnConfiguration.Server(
            host: host, port: port, publicURL: publicURL, maxBodyBytes: maxBody, maxConcurrentWebhooks: concurrent,
            adminToken: adminToken, eventsSocket: eventsSocket)
    }

    mutating func storage(_ node: YAMLNode?, path: [String]) -> KilnConfiguration.Storage? {
        let keys = mapping(node, ["data-dir", "max-log-bytes", "retention"])
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
        return KilnConfiguration.Storage(dataDirectory: dataDirectory, maxLogBytes: maxLog, retention: retention)
    }

    mutating func nix(_ node: YAMLNode?, path: [String]) -> KilnConfiguration.Nix? {
        let keys = mapping(
            node,
            [
                "binary", "max-parallel-jobs", "default-timeout", "max-timeout", "default-max-silent", "eval-timeout",
                "eval-max-memory", "max-parallel-evals", "builders", "options", "cache",
            ])
        let binary = text(keys, "binary", path) ?? "nix"
        let parallel = integer(keys, "max-parallel-jobs", path, in: 1...256) ?? 2
        let defaultTimeout = duration(keys, "default-timeout", path) ?? .seconds(1800)
        let maxTimeout = duration(keys, "max-timeout", path) ?? .seconds(3600)
        let defaultSilent = duration(keys, "default-max-silent", path) ?? .seconds(600)
        let evalTimeout = duration(keys, "eval-timeout", path) ?? .seconds(600)
        let evalMemory = keys["eval-max-memory"].flatMap { yaml.byteSize($0) }
        let parallelEvals = integer(keys, "max-parallel-evals", path, in: 1...64) ?? 1
        if defaultTimeout > maxTimeout {
            report(keys["default-timeout"], path + ["default-timeout"],
                "\(KilnDuration.format(defaultTimeout)) is longer than nix.max-timeout (\(KilnDuration.format(maxTimeout)))")
        }
        var options: [String: String] = [:]
        if let node = keys["options"] {
            for (name, value) in yaml.mapping(node, allowed: nil) ?? [] {
                if NixSettings.refusedOptions.contains(name) {
                    yaml.report(
                        value,
                        "nix.options may not set '\(name)': Kiln always sets \(NixSettings.enforcedOptions.sorted { $0.key < $1.key }.map { "\($0.key) = \($0.value)" }.joined(separator: ", ")), with the work tree as the only search path",
                        code: .invalidValue)
                } else if case .scalar(let scalar) = value.node {
                    options[name] = scalar.string
                } else {
                    yaml.report(value, "'\(value.pathString)' must be a single value", code: .wrongType)
                }
            }
        }
        if let node = keys["builders"], let builders = yaml.stringList(node, allowSingle: false), !builders.isEmpty {
            options["builders"] = builders.map(\.0).joined(separator: ";")
            options["builders-use-substitutes"] = "true"
        }
        var cache: CacheSettings?
        if let node = keys["cache"], !node.isNull {
            let cacheKeys = mapping(node, ["push-to", "secret-key-file", "required"])
            let here = path + ["cache"]
            let pushTo = text(cacheKeys, "push-to", here, required: true)
            let keyFile = text(cacheKeys, "secret-key-file", here, required: true).map(resolve)
            if let keyFile, !FileManager.default.isReadableFile(atPath: keyFile) {
                report(cacheKeys["secret-key-file"], here + ["secret-key-file"], "no such file \(keyFile)")
            }
            if let pushTo, let components = URLComponents(string: pushTo), components.user != nil || components.password != nil {
                report(cacheKeys["push-to"], here + ["push-to"], "credentials do not belong in push-to (nix would get them on its command line); give them to nix in a netrc-file")
            } else if let pushTo, pushTo.range(of: "^[a-z0-9+]+://", options: .regularExpression) == nil {
                report(cacheKeys["push-to"], here + ["push-to"], "'\(pushTo)' is not a nix store URL such as file:///var/cache/kiln or https://cache.example.org")
            }
            let requiredText = text(cacheKeys, "required", here) ?? "false"
            if !["true", "false"].contains(requiredText) {
                report(cacheKeys["required"], here + ["required"], "'\(requiredText)' must be true or false")
            }
            if let pushTo, let keyFile {
                cache = CacheSettings(pushTo: pushTo, secretKeyFile: keyFile, required: requiredText == "true")
            }
        }
        return KilnConfiguration.Nix(
            settings: NixSettings(
                binary: binary, options: options, cache: cache, evalTimeout: evalTimeout,
                evalMaxMemoryKilobytes: evalMemory.map { max(1, $0 / 1024) }, maxParallelEvaluations: parallelEvals),
            maxParallelJobs: parallel,
            limits: JobLimits(defaultTimeout: defaultTimeout, maxTimeout: maxTimeout, defaultMaxSilent: defaultSilent))
    }

    /// Keys that only some forge types take.
    static let typeKeys: [String: [KilnConfiguration.ForgeType]] = [
        "git-url": [.bitbucketCloud], "signing-token-files": [.gitlab], "token-kind": [.gitlab], "app-id": [.github],
        "app-private-key-file": [.github],
    ]

    mutating func forges(_ node: YAMLNode?, path: [String]) -> [KilnConfiguration.Forge]? {
        guard let node, !node.isNull else {
            ownProblems.append("\(file): forges: add at least one forge (see config/kiln.yaml for an example)")
            return nil
        }
        guard let entries = yaml.mapping(node, allowed: nil) else { return nil }
        var forges: [KilnConfiguration.Forge] = []
        for (name, value) in entries {
            if let forge = self.forge(name, value, path: path + [name]) { forges.append(forge) }
        }
        return forges
    }

    mutating func forge(_ name: String, _ value: YAMLNode, path here: [String]) -> KilnConfiguration.Forge? {
        guard name.range(of: "^[a-z0-9][a-z0-9-]{0,39}$", options: .regularExpression) != nil else {
            yaml.report(value, "forge name '\(name)' must be lowercase letters, digits and '-' (it is part of the webhook URL)", code: .invalidValue)
            return nil
        }
        let keys = mapping(
            value,
            ["type", "api-url", "git-url", "webhook-secret-files", "signing-token-files", "token-file", "token-kind", "app-id",
             "app-private-key-file", "status-api"])
        guard let typeText = text(keys, "type", here, required: true) else { return nil }
        guard let type = KilnConfiguration.ForgeType(rawValue: typeText) else {
            report(keys["type"], here + ["type"],
                "'\(typeText)' is not a forge type; one of: \(KilnConfiguration.ForgeType.allCases.map(\.rawValue).joined(separator: ", "))")
            return nil
        }
        for (key, types) in Self.typeKeys where keys[key] != nil && !types.contains(type) {
            report(keys[key], here + [key], "applies only to \(types.map(\.rawValue).joined(separator: ", ")) forges, not \(type.rawValue)")
        }
        let statusText = text(keys, "status-api", here) ?? "statuses"
        guard let statusAPI = KilnConfiguration.StatusAPI(rawValue: statusText) else {
            report(keys["status-api"], here + ["status-api"],
                "'\(statusText)' is not one of: \(KilnConfiguration.StatusAPI.allCases.map(\.rawValue).joined(separator: ", "))")
            return nil
        }
        guard let apiURL = url(keys, "api-url", here, default: type.defaultURL) else {
            if keys["api-url"] == nil { report(value, here + ["api-url"], "is required for \(type.rawValue) forges: the instance's URL") }
            return nil
        }
        let gitURL = url(keys, "git-url", here, default: "https://bitbucket.org") ?? "https://bitbucket.org"
        let secrets = secretList(keys, "webhook-secret-files", here)
        let signingTokens = secretList(keys, "signing-token-files", here)
        if Self.isAbsentOrEmpty(keys["webhook-secret-files"]), Self.isAbsentOrEmpty(keys["signing-token-files"]) {
            report(value, here + ["webhook-secret-files"],
                "is required: list the files holding the webhook secret(s); Kiln refuses unsigned webhooks")
        }
        for (token, at) in zip(signingTokens, 0...) where !GitLabForge.isSigningToken(token) {
            report(keys["signing-token-files"], here + ["signing-token-files", "[\(at)]"], "is not a signing token (whsec_<base64>)")
        }
        let token = text(keys, "token-file", here).flatMap { readSecret($0, keys["token-file"], here + ["token-file"]) }
        let kind = text(keys, "token-kind", here) ?? "private-token"
        if !["private-token", "bearer"].contains(kind) {
            report(keys["token-kind"], here + ["token-kind"], "'\(kind)' is not one of: private-token, bearer")
        }
        var app: KilnConfiguration.GitHubAppCredentials?
        if let appID = text(keys, "app-id", here) {
            if let keyPath = text(keys, "app-private-key-file", here, required: true),
                let privateKey = readSecret(keyPath, keys["app-private-key-file"], here + ["app-private-key-file"])
            {
                app = KilnConfiguration.GitHubAppCredentials(appID: appID, privateKey: privateKey)
            }
        } else if keys["app-private-key-file"] != nil {
            report(keys["app-private-key-file"], here + ["app-id"], "is required with app-private-key-file: the App's id or client id")
        }
        if statusAPI == .checks, keys["app-id"] == nil {
            report(keys["status-api"], here + ["status-api"], "checks needs a GitHub App: set app-id and app-private-key-file")
        }
        if keys["token-file"] == nil, keys["app-id"] == nil, statusAPI != .none {
            report(value, here + ["token-file"], "is required to post statuses; set it, or set status-api: none")
        }
        return KilnConfiguration.Forge(
            name: here.last ?? "", type: type, apiURL: apiURL, gitURL: gitURL, webhookSecrets: secrets,
            signingTokens: signingTokens, token: token, bearerToken: kind == "bearer", app: app, statusAPI: statusAPI)
    }

    /// An http(s) URL without a trailing slash; `default` when the key is absent.
    mutating func url(_ keys: [String: YAMLNode], _ key: String, _ path: [String], default fallback: String?) -> String? {
        guard var value = text(keys, key, path) ?? fallback else { return nil }
        if value.hasSuffix("/") { value.removeLast() }
        guard value.hasPrefix("https://") || value.hasPrefix("http://") || value.hasPrefix("file://"),
            URL(string: value) != nil
        else {
            report(keys[key], path + [key], "'\(value)' is not an http(s) URL")
            return nil
        }
        return value
    }

    /// The secrets in a list of files.
    /// Whether a list key is missing, or an empty list.
    static func isAbsentOrEmpty(_ node: YAMLNode?) -> Bool {
        guard let node else { return true }
        if case .sequence(let items) = node.node { return items.isEmpty }
        return false
    }

    mutating func secretList(_ keys: [String: YAMLNode], _ key: String, _ path: [String]) -> [Secret] {
        guard let list = keys[key] else { return [] }
        return (yaml.stringList(list, allowSingle: true) ?? []).compactMap { secretPath, item in
            readSecret(secretPath, item, item.path)
        }
    }

    mutating func repositories(_ node: YAMLNode?, path: [String], forges: [KilnConfiguration.Forge])
        -> [KilnConfiguration.Repository]?
    {
        guard let node, !node.isNull else {
            ownProblems.append("\(file): repositories: add at least one repository to build")
            return nil
        }
        guard let items = yaml.list(node) else { return nil }
        var repositories: [KilnConfiguration.Repository] = []
        var seen: Set<String> = []
        for item in items {
            let keys = mapping(item, ["forge", "name", "clone-url", "forks", "pull-requests"])
            let here = item.path
            guard let forge = text(keys, "forge", here, required: true), let name = text(keys, "name", here, required: true),
                let cloneText = text(keys, "clone-url", here, required: true)
            else { continue }
            let type = forges.first { $0.name == forge }?.type
            if type == nil {
                report(keys["forge"], here + ["forge"], "no forge named '\(forge)' under forges")
            }
            // GitLab names may have subgroups; Bitbucket Data Center's personal projects start with '~'.
            let pattern =
                type == .gitlab ? "^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)+$"
                : type == .bitbucketServer ? "^~?[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$" : "^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$"
            if name.range(of: pattern, options: .regularExpression) == nil {
                report(keys["name"], here + ["name"], type == .gitlab ? "'\(name)' is not group/name" : "'\(name)' is not owner/name")
            }
            if !seen.insert("\(forge)/\(name.lowercased())").inserted {
                report(keys["name"], here + ["name"], "'\(name)' is configured twice for forge '\(forge)'")
            }
            let cloneURL = self.cloneURL(cloneText, keys["clone-url"], here + ["clone-url"])
            let forksText = text(keys, "forks", here) ?? "require-approval"
            guard let forks = ForkPolicy(rawValue: forksText) else {
                report(keys["forks"], here + ["forks"],
                    "'\(forksText)' is not one of: \(ForkPolicy.allCases.map(\.rawValue).joined(separator: ", "))")
                continue
            }
            let modeText = text(keys, "pull-requests", here) ?? "merge"
            guard let mode = PullRequestMode(rawValue: modeText) else {
                report(keys["pull-requests"], here + ["pull-requests"],
                    "'\(modeText)' is not one of: \(PullRequestMode.allCases.map(\.rawValue).joined(separator: ", "))")
                continue
            }
            if let cloneURL {
                repositories.append(
                    KilnConfiguration.Repository(forge: forge, name: name, cloneURL: cloneURL, forks: forks, pullRequests: mode))
            }
        }
        return repositories
    }

    // MARK: Values

    /// `https://` and `ssh://` URLs without passwords, and `file://` URLs; `file:relative/path`
    /// is resolved against the configuration file's directory.
    mutating func cloneURL(_ text: String, _ node: YAMLNode?, _ path: [String]) -> String? {
        if text.hasPrefix("file:") {
            var rest = String(text.dropFirst(5))
            if rest.hasPrefix("//") {
                rest.removeFirst(2)
                guard rest.hasPrefix("/") else {
                    report(node, path, "'\(text)' must be file:///absolute/path, or file:relative/path")
                    return nil
                }
            }
            return "file://" + resolve(rest)
        }
        guard text.hasPrefix("https://") || text.hasPrefix("ssh://"), let url = URLComponents(string: text), url.host != nil
        else {
            report(node, path, "'\(text)' is not an https://, ssh:// or file:// URL")
            return nil
        }
        if url.password != nil || (text.hasPrefix("https://") && url.user != nil) {
            report(node, path, "credentials do not belong in clone-url; put the token in the forge's token-file")
            return nil
        }
        return text
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
        guard case .scalar(let scalar) = node.node else {
            yaml.report(node, "'\(node.pathString)' must be a single value, not \(YAMLReader.kind(of: node.node))", code: .wrongType)
            return nil
        }
        return scalar.string
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
