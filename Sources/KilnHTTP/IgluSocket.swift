import Foundation
import Hummingbird
import HummingbirdWebSocket
import KilnCore
import NIOWebSocket

/// The Iglu Builder's WebSocket, `/api/v1/build`: one build job per connection, answered with
/// the messages and close codes the Iglu Builder documents. The job is an ad-hoc build (the
/// same validation, allow-list, sandbox and limits as `POST /api/v1/builds`); its log streams
/// back line by line.
struct IgluSocket: Sendable {
    let builds: any AdHocBuilds
    let store: any BuildQueries
    let logs: JobLogs
    /// Builds at once over this socket; one more connection is told a job is running.
    let slots: Slots

    /// How often the running job's log is looked at for more.
    static let interval: Duration = .milliseconds(100)

    /// One answer, with its millisecond timestamp.
    static func answer(_ fields: [String: Any]) -> String {
        var object = fields
        object["timestamp"] = Int64(Date().timeIntervalSince1970 * 1000)
        let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])) ?? Data()
        return String(decoding: data, as: UTF8.self)
    }

    func handle(_ inbound: WebSocketInboundStream, _ outbound: WebSocketOutboundWriter) async throws {
        guard slots.take() else {
            try await outbound.write(.text(Self.answer(["error": "A build job is already running.", "jobStatus": "running"])))
            try await outbound.close(.normalClosure, reason: nil)
            return
        }
        defer { slots.give() }
        var messages = inbound.messages(maxSize: 1 << 20).makeAsyncIterator()
        guard let message = try await messages.next() else { return }
        let text: String
        switch message {
        case .text(let string): text = string
        case .binary(let buffer): text = String(buffer: buffer)
        }
        func fail(_ error: String, exitCode: Int? = nil, close code: WebSocketErrorCode) async throws {
            var fields: [String: Any] = ["error": error, "jobStatus": "failed"]
            if let exitCode { fields["buildExitCode"] = exitCode }
            try await outbound.write(.text(Self.answer(fields)))
            try await outbound.close(code, reason: nil)
        }
        guard let object = (try? JSONSerialization.jsonObject(with: Data(text.utf8))) as? [String: Any] else {
            return try await fail("Not a valid JSON", close: .dataInconsistentWithMessage)
        }
        let request: [String: Any]
        switch IgluJob.request(object) {
        case .invalidSchema: return try await fail("JSON schema is not valid.", close: .dataInconsistentWithMessage)
        case .invalidCommand(let command):
            return try await fail("Invalid command: '\(command)'", exitCode: 2, close: .dataInconsistentWithMessage)
        case .unsupported(let reason): return try await fail(reason, close: .dataInconsistentWithMessage)
        case .request(let body): request = body
        }
        let body = (try? JSONSerialization.data(withJSONObject: request)).map(Array.init) ?? []
        let id: BuildID
        switch await builds.submit(body) {
        case .refused(_, let message): return try await fail(message, close: .dataInconsistentWithMessage)
        case .accepted(let build, _): id = build
        }
        try await outbound.write(.text(Self.answer(["msg": "Start Building", "jobStatus": "starting"])))
        let job = try await follow(id, outbound)
        if job?.state == .succeeded {
            try await outbound.write(.text(Self.answer(["msg": "Build was successfull", "buildExitCode": 0, "jobStatus": "success"])))
            try await outbound.close(.normalClosure, reason: nil)
        } else {
            let code = Int(job?.exitCode ?? 1)
            try await fail(
                "Something went wrong while building. Builder exited with error code \(code)", exitCode: code, close: .unexpectedServerError)
        }
    }

    /// Sends the build's job's log, a line per message, until the job (or the build) ends;
    /// returns the job as it ended.
    private func follow(_ build: BuildID, _ outbound: WebSocketOutboundWriter) async throws -> JobRecord? {
        var position = 0
        var pending: [UInt8] = []
        while !Task.isCancelled {
            guard let details = try await store.buildDetails(build) else { return nil }
            let job = details.jobs.first
            // Whether it had ended is read before the file: what it wrote before then is in it.
            let ended = job?.state.isFinal ?? details.build.state.isFinal
            if let job, let handle = FileHandle(forReadingAtPath: logs.log(job.id)) {
                defer { try? handle.close() }
                try handle.seek(toOffset: UInt64(position))
                let data = try handle.readToEnd() ?? Data()
                position += data.count
                pending += data
                while let newline = pending.firstIndex(of: 0x0A) {
                    let line = String(decoding: pending[..<newline], as: UTF8.self)
                    pending.removeSubrange(...newline)
                    try await outbound.write(.text(Self.answer(["stdout": line, "jobStatus": "running"])))
                }
            }
            if ended {
                if !pending.isEmpty {
                    try await outbound.write(.text(Self.answer(["stdout": String(decoding: pending, as: UTF8.self), "jobStatus": "running"])))
                }
                return job
            }
            try await Task.sleep(for: Self.interval)
        }
        return nil
    }
}

/// An Iglu Builder job, checked against its JSON Schema and turned into an ad-hoc request.
enum IgluJob {
    enum Parsed {
        case invalidSchema
        case invalidCommand(String)
        case unsupported(String)
        case request([String: Any])
    }

    static let gitKeys: Set<String> = ["repository", "branch", "gitUsername", "gitKey", "requiresAuth", "noClone"]
    static let optionKeys: Set<String> = [
        "cores", "maxJobs", "keep_going", "extraArgs", "substituters", "trustedPublicKeys", "command", "cachix",
    ]
    static let cachixKeys: Set<String> = ["push", "target", "apiKey", "signingKey"]

    /// The request a job's JSON asks for; the current Iglu spellings (`git_config`,
    /// `build_options`, `cachix_config`) are read too.
    static func request(_ object: [String: Any]) -> Parsed {
        guard let git = (object["git"] ?? object["git_config"]) as? [String: Any],
            var options = (object["buildOptions"] ?? object["build_options"]) as? [String: Any]
        else { return .invalidSchema }
        if options["cachix"] == nil, let cachix = options.removeValue(forKey: "cachix_config") { options["cachix"] = cachix }
        guard Set(git.keys).isSubset(of: gitKeys), let noClone = git["noClone"] as? Bool,
            Set(options.keys).isSubset(of: optionKeys), let command = options["command"] as? String,
            let cachix = options["cachix"] as? [String: Any], Set(cachix.keys).isSubset(of: cachixKeys), let push = cachix["push"] as? Bool
        else { return .invalidSchema }
        for key in ["repository", "branch", "gitUsername", "gitKey"] where git[key] != nil && !(git[key] is String) { return .invalidSchema }
        if git["requiresAuth"] != nil, !(git["requiresAuth"] is Bool) { return .invalidSchema }
        for key in ["cores", "maxJobs"] where options[key] != nil && !(options[key] is NSNumber) { return .invalidSchema }
        if options["keep_going"] != nil, !(options["keep_going"] is Bool) { return .invalidSchema }
        if options["extraArgs"] != nil, !(options["extraArgs"] is String) { return .invalidSchema }
        for key in ["substituters", "trustedPublicKeys"] where options[key] != nil && !(options[key] is [String]) { return .invalidSchema }
        for key in ["target", "apiKey", "signingKey"] where cachix[key] != nil && !(cachix[key] is String) { return .invalidSchema }
        let full = command + ((options["extraArgs"] as? String).map { " " + $0 } ?? "")
        guard let target = IgluCommand.target(full) else { return .invalidCommand(command) }
        var request: [String: Any] = ["service": "iglu"]
        var buildOptions: [String: Any] = [:]
        if let cores = options["cores"] as? NSNumber { buildOptions["cores"] = cores.intValue }
        if let jobs = options["maxJobs"] as? NSNumber { buildOptions["max-jobs"] = jobs.intValue }
        if options["keep_going"] as? Bool == true { buildOptions["keep-going"] = true }
        for (key, value) in IgluCommand.options(full) { buildOptions[key] = value }
        if !buildOptions.isEmpty { request["build-options"] = buildOptions }
        if push {
            guard let target = cachix["target"] as? String else { return .invalidSchema }
            var settings: [String: Any] = ["target": target]
            if let key = cachix["apiKey"] { settings["api-key"] = key }
            if let key = cachix["signingKey"] { settings["signing-key"] = key }
            request["cachix"] = settings
        }
        switch target {
        case .installables(let installables):
            request["build"] = installables
        case .classic(let file, let attribute):
            request["file"] = file
            if let attribute { request["attr"] = attribute }
        }
        var source: [String: Any] = [:]
        if noClone {
            source["workdir"] = true
        } else {
            guard let repository = git["repository"] as? String else { return .invalidSchema }
            source["url"] = repository
        }
        if let branch = git["branch"] { source["branch"] = branch }
        if git["requiresAuth"] as? Bool == true, let key = git["gitKey"] { source["token"] = key }
        if let user = git["gitUsername"] { source["username"] = user }
        request["git"] = source
        return .request(request)
    }
}

/// An Iglu job's `command`, read as words (never by a shell): `nix build [options] INSTALLABLE…`
/// or `nix-build [FILE] [-A ATTR] [options]`, with the options nix builds take and nothing that
/// changes where or how it builds.
enum IgluCommand {
    enum Target: Equatable {
        case installables([String])
        case classic(file: String, attribute: String?)
    }

    /// Options taken (and left to the server's settings), with whether each takes a value.
    static let options: [String: Bool] = [
        "-L": false, "--print-build-logs": false, "--keep-going": false, "-k": false, "-j": true, "--max-jobs": true,
        "--cores": true, "--no-link": false,
    ]

    /// The build options the command's words give (`-j 2`, `--cores 1`, `--keep-going`).
    static func options(_ command: String) -> [String: Any] {
        let words = command.split(separator: " ").map(String.init)
        var found: [String: Any] = [:]
        for (index, word) in words.enumerated() {
            let next = index + 1 < words.count ? Int(words[index + 1]) : nil
            switch word {
            case "-j", "--max-jobs": if let next { found["max-jobs"] = next }
            case "--cores": if let next { found["cores"] = next }
            case "--keep-going", "-k": found["keep-going"] = true
            default: break
            }
        }
        return found
    }

    static func target(_ command: String) -> Target? {
        // Only plain words: no quotes, substitutions, redirections or separators to interpret.
        guard command.range(of: #"^[A-Za-z0-9 ._#/:+=@-]+$"#, options: .regularExpression) != nil else { return nil }
        var words = command.split(separator: " ").map(String.init)
        let classic: Bool
        if words.starts(with: ["nix", "build"]) {
            words.removeFirst(2)
            classic = false
        } else if words.first == "nix-build" {
            words.removeFirst()
            classic = true
        } else {
            return nil
        }
        var positional: [String] = []
        var attribute: String?
        var index = 0
        while index < words.count {
            let word = words[index]
            if classic, word == "-A" || word == "--attr" {
                guard index + 1 < words.count, attribute == nil else { return nil }
                attribute = words[index + 1]
                index += 2
                continue
            }
            if let takesValue = options[word] {
                if takesValue {
                    guard index + 1 < words.count, Int(words[index + 1]) != nil || words[index + 1] == "auto" else { return nil }
                    index += 1
                }
                index += 1
                continue
            }
            if word.hasPrefix("-") { return nil }
            positional.append(word)
            index += 1
        }
        if classic {
            guard positional.count <= 1 else { return nil }
            return .classic(file: positional.first ?? "default.nix", attribute: attribute)
        }
        return positional.isEmpty ? nil : .installables(positional)
    }
}
