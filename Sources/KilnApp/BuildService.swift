import Foundation
import KilnCore
import KilnGit
import KilnHTTP
import KilnNix
import KilnPipeline

/// Ad-hoc builds (`POST /api/v1/builds`): from an expression, a template or an allowed git
/// URL. Each request becomes a commit of the build service's own repository and a build of the
/// synthetic repository `api/build-service`, planned from the request: the planner, worker,
/// executor, pages, events and metrics are every build's.
struct BuildService: AdHocBuilds {
    static let forge = "api"
    static let repositoryName = "build-service"

    let coordinator: BuildCoordinator
    let repository: BuildServiceRepository
    let repositoryID: RepositoryID
    let settings: KilnConfiguration.BuildService
    let limits: JobLimits
    let nix: NixExecutor
    /// Where the requests' Cachix secrets are kept, in memory, for the worker.
    let secrets: AdHocSecrets

    /// The files of an expression or template build: Kiln's `default.nix` calls the request's
    /// function with the arguments it takes, from `request.json` (never the environment).
    static let wrapper = """
        # Written by Kiln for an ad-hoc build: calls expression.nix with what the request gave.
        let
          f = import ./expression.nix;
          request = builtins.fromJSON (builtins.readFile ./request.json);
          given = { env = request.env; } // request.customizations;
        in
        if builtins.isFunction f then f (builtins.intersectAttrs (builtins.functionArgs f) given) else f

        """

    static let keys: Set<String> = [
        "expression", "git", "template", "customizations", "build", "file", "attr", "service", "env", "timeout", "image", "cachix",
        "build-options",
    ]
    static let cachixKeys: Set<String> = ["target", "api-key", "signing-key"]
    static let gitKeys: Set<String> = ["url", "workdir", "branch", "token", "token-file", "username", "shallow"]

    struct Refusal: Error {
        var status: Int
        var message: String
        static func bad(_ message: String) -> Refusal { Refusal(status: 400, message: message) }
    }

    func submit(_ body: [UInt8]) async -> AdHocAnswer {
        do {
            let (delivery, source) = try await prepare(body)
            let accepted = try await coordinator.accept(delivery)
            return .accepted(accepted.buildID, source: source)
        } catch let refusal as Refusal {
            return .refused(status: refusal.status, message: refusal.message)
        } catch {
            return .refused(status: 500, message: "could not queue the build: \(error)")
        }
    }

    /// The delivery a request makes, and a description of its source.
    private func prepare(_ body: [UInt8]) async throws -> (NewDelivery, String) {
        guard let request = (try? JSONSerialization.jsonObject(with: Data(body))) as? [String: Any] else {
            throw Refusal.bad("send a JSON object with one of expression, git or template")
        }
        if let unknown = request.keys.sorted().first(where: { !Self.keys.contains($0) }) {
            throw Refusal.bad("unknown key '\(unknown)'; the keys are \(Self.keys.sorted().joined(separator: ", "))")
        }
        let kinds = ["expression", "git", "template"].filter { request[$0] != nil }
        guard kinds.count == 1 else {
            throw Refusal.bad("give exactly one of expression, git or template (this request has \(kinds.isEmpty ? "none" : kinds.joined(separator: " and ")))")
        }
        var service: String?
        if let value = request["service"] {
            guard let text = value as? String, text.range(of: #"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"#, options: .regularExpression) != nil else {
                throw Refusal.bad("service must be 1 to 64 letters, digits, '_', '.' or '-', such as service-123")
            }
            service = text
        }
        var timeout: Int64?
        if let value = request["timeout"] {
            guard let text = value as? String, let duration = KilnDuration.parse(text), duration > .zero else {
                throw Refusal.bad("timeout must be a duration such as 40m or 1h")
            }
            guard duration <= limits.maxTimeout else {
                throw Refusal.bad("timeout \(text) is longer than this server's max-timeout, \(KilnDuration.format(limits.maxTimeout))")
            }
            timeout = duration.components.seconds
        }
        let image = try Self.image(request["image"])
        let cachix = try Self.cachix(request["cachix"], allowed: settings.cachixHosts)
        let buildOptions = try Self.buildOptions(request["build-options"])
        let id = UUID().uuidString.lowercased()
        let ref = "refs/heads/adhoc/\(id)"
        let sha: String
        let target: JobTarget
        let origin: String
        if let expression = request["expression"] {
            guard let text = expression as? String, !text.isEmpty, text.utf8.count <= 256 << 10 else {
                throw Refusal.bad("expression must be nix code as a string, at most 256 KiB")
            }
            if let problem = await nix.expressionProblem(text) { throw Refusal.bad(problem) }
            let env = try Self.stringMap(request["env"], "env")
            sha = try await commit(expression: text, env: env, customizations: [:], ref: ref, message: "expression")
            (target, origin) = (.classic(file: "default.nix", attribute: nil), "expression")
        } else if let name = request["template"] {
            guard let name = name as? String, name.range(of: "^[a-z0-9][a-z0-9-]{0,63}$", options: .regularExpression) != nil else {
                throw Refusal.bad("template must be a template's name, such as node-app (GET /api/v1/templates lists them)")
            }
            guard let directory = settings.templatesDirectory,
                let text = try? String(contentsOfFile: "\(directory)/\(name).nix", encoding: .utf8)
            else { throw Refusal(status: 404, message: "no template '\(name)'; GET /api/v1/templates lists them") }
            var customizations = request["customizations"] as? [String: Any] ?? [:]
            if request["customizations"] != nil, request["customizations"] as? [String: Any] == nil {
                throw Refusal.bad("customizations must be an object, such as {\"env\": {\"PORT\": \"8080\"}}")
            }
            let env = try Self.stringMap(customizations.removeValue(forKey: "env") ?? request["env"], "customizations.env")
            sha = try await commit(expression: text, env: env, customizations: customizations, ref: ref, message: "template \(name)")
            (target, origin) = (.classic(file: "default.nix", attribute: nil), "template \(name)")
        } else {
            (sha, target, origin) = try await fetch(request, ref: ref)
        }
        var delivery = NewDelivery(
            forge: Self.forge, deliveryID: id, repositoryID: repositoryID, repository: Self.repositoryName, ref: .branch("adhoc/\(id)"),
            sha: sha)
        delivery.adHoc = AdHocPlan(target: target, timeoutSeconds: timeout, origin: origin, image: image, cachix: cachix?.display)
        delivery.adHoc?.buildOptions = buildOptions
        delivery.service = service
        // The secrets stay in memory, for the worker; the database has only where they push.
        if let cachix { secrets.keep(cachix, for: id) }
        return (delivery, origin)
    }

    /// Commits an expression (or template) with Kiln's wrapper and the request's values.
    private func commit(expression: String, env: [String: String], customizations: [String: Any], ref: String, message: String)
        async throws -> String
    {
        guard JSONSerialization.isValidJSONObject(customizations),
            let request = try? JSONSerialization.data(
                withJSONObject: ["env": env, "customizations": customizations], options: [.sortedKeys])
        else { throw Refusal.bad("customizations must hold JSON values") }
        do {
            return try await repository.commit(
                files: ["default.nix": Array(Self.wrapper.utf8), "expression.nix": Array(expression.utf8), "request.json": Array(request)],
                ref: ref, message: message)
        } catch {
            throw Refusal(status: 500, message: "could not record the build's source: \(error.message)")
        }
    }

    /// Fetches a git request's branch into the build service's repository.
    private func fetch(_ request: [String: Any], ref: String) async throws -> (String, JobTarget, String) {
        guard let git = request["git"] as? [String: Any] else {
            throw Refusal.bad("git must be an object such as {\"url\": \"https://github.com/user/repo.git\", \"branch\": \"main\"}")
        }
        if let unknown = git.keys.sorted().first(where: { !Self.gitKeys.contains($0) }) {
            throw Refusal.bad("unknown key 'git.\(unknown)'; the keys are \(Self.gitKeys.sorted().joined(separator: ", "))")
        }
        let url: String
        if git["workdir"] as? Bool == true {
            // The Iglu Builder's noClone: the operator's own work directory, a git repository.
            guard let workdir = settings.igluWorkdir else {
                throw Refusal.bad("noClone builds from build-service.iglu-workdir, which this server does not set")
            }
            url = "file://" + workdir
        } else {
            guard let given = git["url"] as? String else { throw Refusal.bad("git.url is required") }
            if let problem = Self.urlProblem(given, allowed: settings.gitHosts) { throw Refusal.bad(problem) }
            url = given
        }
        let branch = git["branch"] as? String ?? "main"
        guard GitRef(fullName: "refs/heads/\(branch)") != nil, !branch.hasPrefix("-"),
            branch.range(of: #"^[A-Za-z0-9._/-]{1,200}$"#, options: .regularExpression) != nil, !branch.contains("..")
        else { throw Refusal.bad("git.branch '\(branch)' is not a branch name") }
        let target: JobTarget
        if let file = request["file"] as? String {
            let attribute = request["attr"] as? String
            if let problem = JobTarget.fileConfinementProblem(file) { throw Refusal.bad("file: \(problem)") }
            if file.hasPrefix("-") || attribute.map({ $0.hasPrefix("-") || $0.contains(where: \.isWhitespace) }) == true {
                throw Refusal.bad("file and attr must not start with '-'")
            }
            target = .classic(file: file, attribute: attribute)
        } else {
            let installables = (request["build"] as? [String]) ?? (request["build"] as? String).map { [$0] } ?? []
            guard !installables.isEmpty, installables.count <= 16 else {
                throw Refusal.bad("build is required with git: the installable to build, such as .#app")
            }
            for build in installables {
                if let problem = PipelineFile.installableProblem(build) ?? JobTarget.installableConfinementProblem(build) {
                    throw Refusal.bad("build: \(problem)")
                }
            }
            target = .installables(installables)
        }
        var token: Secret?
        if let text = git["token"] {
            guard let text = text as? String, !text.isEmpty else { throw Refusal.bad("git.token must be a non-empty string") }
            token = Secret(text)
        } else if let name = git["token-file"] {
            guard let name = name as? String, name.range(of: "^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$", options: .regularExpression) != nil else {
                throw Refusal.bad("git.token-file must name a file in build-service.secrets-dir, without '/'")
            }
            guard let directory = settings.secretsDirectory,
                let data = FileManager.default.contents(atPath: "\(directory)/\(name)")
            else { throw Refusal.bad("git.token-file '\(name)' is not a file in build-service.secrets-dir") }
            token = Secret(String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines))
        }
        let user = git["username"] as? String ?? "x-access-token"
        let sha: String
        do {
            sha = try await repository.fetch(url: url, branch: branch, user: user, token: token, into: ref)
        } catch {
            throw Refusal(status: 422, message: Self.fetchProblem(error.message, hasToken: token != nil))
        }
        return (sha, target, "git \(url)#\(branch) at \(CommitID.short(sha))")
    }

    /// A fetch's error, with what to do about it.
    static func fetchProblem(_ message: String, hasToken: Bool) -> String {
        // 401 as a status, not as digits of the fetch's ref name (a UUID).
        let unauthorized = message.range(of: "(^|[^0-9A-Za-z])401([^0-9A-Za-z]|$)", options: .regularExpression) != nil
        if message.contains("token was refused") || unauthorized || message.lowercased().contains("authentication") {
            return hasToken
                ? "\(message); check that git.token (or git.token-file) may read the repository"
                : "\(message); the repository needs credentials: send git.token or git.token-file"
        }
        if message.contains("is not in") { return message }
        return "\(message); check git.url and that this server can reach it"
    }

    /// Why `url` may not be fetched, or nil when it may: an http(s) or ssh URL on an allowed
    /// host, without credentials, options or control characters.
    static func urlProblem(_ url: String, allowed: [String]) -> String? {
        if url.hasPrefix("-") || url.contains(where: { $0.isWhitespace || ($0.asciiValue.map { $0 < 0x20 || $0 == 0x7F } ?? false) }) {
            return "git.url must not start with '-' or contain spaces or control characters"
        }
        guard let components = URLComponents(string: url), let scheme = components.scheme?.lowercased(),
            ["https", "http", "ssh"].contains(scheme), let host = components.host?.lowercased(), !host.isEmpty
        else { return "git.url '\(url)' is not an https://, http:// or ssh:// URL" }
        if components.password != nil || (components.user != nil && scheme != "ssh") {
            return "git.url must not hold credentials; send git.token or git.token-file"
        }
        if components.query != nil || components.fragment != nil || components.path.isEmpty || components.path == "/" {
            return "git.url must name a repository, without a query or fragment"
        }
        let port = components.port.map { ":\($0)" } ?? ""
        let origin = "\(scheme)://\(host)\(port)"
        let permitted = allowed.contains { entry in
            let entry = entry.lowercased()
            if entry.contains("://") { return entry == origin }
            return entry == host && port.isEmpty && (scheme == "https" || scheme == "ssh")
        }
        return permitted ? nil : "git.url's host \(origin) is not in build-service.git-hosts"
    }

    static func stringMap(_ value: Any?, _ name: String) throws -> [String: String] {
        guard let value else { return [:] }
        guard let object = value as? [String: Any], object.count <= 64 else {
            throw Refusal.bad("\(name) must be an object of at most 64 names and string values")
        }
        var map: [String: String] = [:]
        for (key, item) in object {
            guard key.range(of: "^[A-Za-z_][A-Za-z0-9_]{0,127}$", options: .regularExpression) != nil else {
                throw Refusal.bad("\(name): '\(key)' is not a variable name (letters, digits and '_')")
            }
            guard let text = item as? String, text.utf8.count <= 4096 else {
                throw Refusal.bad("\(name).\(key) must be a string of at most 4 KiB")
            }
            map[key] = text
        }
        return map
    }

    /// A request's `cachix`: `{"target": "https://cachix.org/NAME", "api-key": …, "signing-key": …}`,
    /// to a host in `build-service.cachix-hosts`.
    static func cachix(_ value: Any?, allowed: [String]) throws -> CachixPush? {
        guard let value else { return nil }
        guard let object = value as? [String: Any], let target = object["target"] as? String else {
            throw Refusal.bad("cachix must be an object with a target, such as {\"target\": \"https://cachix.org/NAME\", \"api-key\": …}")
        }
        if let unknown = object.keys.sorted().first(where: { !cachixKeys.contains($0) }) {
            throw Refusal.bad("unknown key 'cachix.\(unknown)'; the keys are \(cachixKeys.sorted().joined(separator: ", "))")
        }
        guard let (host, cache) = CachixPush.split(target) else {
            throw Refusal.bad("cachix.target '\(target)' is not an http(s) URL ending in the cache's name, such as https://cachix.org/NAME")
        }
        guard let origin = URLComponents(string: host).map({ "\($0.scheme ?? "")://\($0.host ?? "")" + ($0.port.map { ":\($0)" } ?? "") }),
            allowed.contains(where: { $0.lowercased() == origin.lowercased() || $0.lowercased() == host.lowercased() })
        else { throw Refusal.bad("cachix.target's host \(host) is not in build-service.cachix-hosts") }
        for key in ["api-key", "signing-key"] where object[key] != nil && !(object[key] is String) {
            throw Refusal.bad("cachix.\(key) must be a string")
        }
        if let key = object["signing-key"] as? String, Data(base64Encoded: key)?.count != 64 {
            throw Refusal.bad("cachix.signing-key must be base64 of a 64-byte ed25519 secret key (cachix generate-keypair)")
        }
        return CachixPush(
            host: host, cache: cache, token: Secret(object["api-key"] as? String ?? ""),
            signingKey: (object["signing-key"] as? String).map(Secret.init))
    }

    /// `build-options`: `{"cores": 2, "max-jobs": 1, "keep-going": true}`, within the machine.
    static func buildOptions(_ value: Any?) throws -> AdHocBuildOptions {
        guard let value else { return AdHocBuildOptions() }
        guard let object = value as? [String: Any], Set(object.keys).isSubset(of: ["cores", "max-jobs", "keep-going"]) else {
            throw Refusal.bad("build-options must be an object of cores, max-jobs and keep-going")
        }
        var options = AdHocBuildOptions()
        let machine = ProcessInfo.processInfo.activeProcessorCount
        for (key, keyPath) in [("cores", \AdHocBuildOptions.cores), ("max-jobs", \.maxJobs)] {
            guard let number = object[key] else { continue }
            guard let count = (number as? NSNumber)?.intValue, number is NSNumber, (key == "cores" ? 0 : 1)...machine ~= count else {
                throw Refusal.bad("build-options.\(key) must be a whole number from \(key == "cores" ? 0 : 1) to \(machine), this machine's cores")
            }
            options[keyPath: keyPath] = count
        }
        if let flag = object["keep-going"] {
            guard let flag = flag as? Bool else { throw Refusal.bad("build-options.keep-going must be true or false") }
            options.keepGoing = flag
        }
        return options
    }

    static func image(_ value: Any?) throws -> ImageSpec? {
        guard let value else { return nil }
        guard let object = value as? [String: Any], let repository = object["repository"] as? String else {
            throw Refusal.bad("image must be an object with a repository, such as {\"repository\": \"registry.example.org/team/app\"}")
        }
        if let problem = ImageSpec.repositoryProblem(repository) { throw Refusal.bad(problem) }
        var image = ImageSpec(repository: repository, required: object["required"] as? Bool ?? false)
        if let tags = object["tags"] {
            guard let list = tags as? [String], !list.isEmpty, list.count <= ImageSpec.maxTags else {
                throw Refusal.bad("image.tags must list 1 to \(ImageSpec.maxTags) tags")
            }
            if let problem = list.lazy.compactMap(ImageSpec.tagProblem).first { throw Refusal.bad(problem) }
            image.tags = list
        }
        return image
    }

    func templates() async -> [AdHocTemplate] {
        guard let directory = settings.templatesDirectory,
            let names = try? FileManager.default.contentsOfDirectory(atPath: directory)
        else { return [] }
        var templates: [AdHocTemplate] = []
        for file in names.sorted() where file.hasSuffix(".nix") {
            let name = String(file.dropLast(4))
            guard name.range(of: "^[a-z0-9][a-z0-9-]{0,63}$", options: .regularExpression) != nil else { continue }
            let arguments = await nix.functionArguments(ofFile: "\(directory)/\(file)") ?? [:]
            templates.append(
                AdHocTemplate(
                    name: name, parameters: arguments.sorted { $0.key < $1.key }.map { .init(name: $0.key, required: !$0.value) }))
        }
        return templates
    }
}
