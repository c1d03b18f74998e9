import Foundation
import KilnCore
import KilnPipeline

/// Pushing a job's output to a registry as an image, with skopeo (no Docker daemon).
///
/// The output is a docker-archive tarball (`dockerTools.buildLayeredImage`), pushed as it is, or
/// a script that writes one (`dockerTools.streamLayeredImage`), which Kiln runs inside the nix
/// sandbox by a derivation of its own: nothing a repository builds runs on the host.
extension NixExecutor {
    func pushImage(_ push: ImagePush, outputs: [BuiltOutput], _ session: inout NixSession, _ binaries: NixBinaries) async
        -> ImagePushResult
    {
        guard let output = outputs.first(where: { $0.name == "out" }) ?? outputs.first else {
            return Self.imageFailed("the job built no output to push as an image")
        }
        let archive: String
        switch ImageArchive.kind(of: output.path) {
        case .archive:
            archive = output.path
        case .compressedArchive, .streamScript:
            // skopeo reads only an uncompressed archive: nix unpacks it (or runs the script) in the sandbox.
            let compressed = ImageArchive.kind(of: output.path) == .compressedArchive
            session.log.note("\(compressed ? "unpacking" : "running") \(output.path) in the sandbox to write the image tarball")
            switch await sandboxedArchive(from: output.path, compressed: compressed, &session, binaries) {
            case .success(let path): archive = path
            case .failure(let problem): return Self.imageFailed(problem.message)
            }
        case .other(let what):
            return Self.imageFailed(
                "\(output.path) is \(what), not an image: build it with dockerTools.buildLayeredImage (a docker-archive tarball) "
                    + "or dockerTools.streamLayeredImage (a script that writes one)")
        }
        guard let skopeo = Self.findSkopeo() else {
            return Self.imageFailed("skopeo was not found on \(ScrubbedEnvironment.systemPath); install it (Debian: apt-get install skopeo)")
        }
        let policy = session.home + "/containers-policy.json"
        do {
            // Kiln pushes what it built itself: no signature policy applies to the source.
            try Data(#"{"default":[{"type":"insecureAcceptAnything"}]}"#.utf8).write(to: URL(fileURLWithPath: policy))
        } catch {
            return Self.imageFailed("could not write skopeo's policy under \(session.home): \(error)")
        }
        var attempts = 0
        var firstRefusal: String?
        var lastError = ""
        for registry in [push.registry] + (push.fallback.map { [$0] } ?? []) {
            if registry != push.registry {
                session.log.note("pushing to the fallback registry \(registry.name) (\(registry.host)) after \(attempts) failed attempts at \(push.registry.host)")
                firstRefusal = lastError
            }
            let repository = "\(registry.host)/\(push.path)"
            for attempt in 1...max(1, registry.attempts) {
                if attempt > 1 {
                    let delay = Duration.seconds(1 << min(attempt - 2, 6))
                    session.log.note("retrying the image push in \(HumanDuration.format(delay))")
                    try? await Task.sleep(for: delay)
                }
                if let reason = session.stop.reason { return Self.imageFailed("stopped: \(reason)", attempts: attempts) }
                attempts += 1
                switch await copy(archive, to: repository, tags: push.tags, registry: registry, skopeo: skopeo, policy: policy, &session) {
                case .success(let pushed):
                    var result = pushed
                    result.attempts = attempts
                    result.usedFallback = registry != push.registry
                    result.message = firstRefusal
                    session.log.note(result.summary)
                    return result
                case .failure(let problem):
                    lastError = problem.message
                    session.log.note("image push to \(registry.host) failed: \(lastError)")
                }
            }
        }
        return Self.imageFailed(lastError, attempts: attempts)
    }

    /// Pushes `archive` under each tag, then reads back what the registry stores.
    private func copy(
        _ archive: String, to repository: String, tags: [String], registry: Registry, skopeo: String, policy: String,
        _ session: inout NixSession
    ) async -> Result<ImagePushResult, NixQueryError> {
        let digestFile = session.home + "/image-digest"
        var credentials: [String] = []
        if let authFile = registry.authFile { credentials = ["--authfile", authFile] }
        let tls = "--tls-verify=\(registry.tlsVerify)"
        let collect = { @Sendable (line: ArraySlice<UInt8>) in _ = line }
        for tag in tags {
            try? FileManager.default.removeItem(atPath: digestFile)
            let arguments =
                ["--policy", policy, "copy", "--retry-times", "0", "--digestfile", digestFile]
                + (registry.authFile.map { ["--dest-authfile", $0] } ?? []) + ["--dest-tls-verify=\(registry.tlsVerify)"]
                + ["docker-archive:" + archive, "docker://\(repository):\(tag)"]
            do {
                let copied = try await session.process(
                    skopeo, arguments, killGrace: settings.killGrace, confined: false, errorLine: collect)
                guard copied.exitCode == 0, copied.stopCause == nil else {
                    return .failure(NixQueryError(message: Self.skopeoError(copied.errorTail)))
                }
            } catch {
                return .failure(NixQueryError(message: "could not run skopeo: \(error)"))
            }
        }
        guard let digest = (try? String(contentsOfFile: digestFile, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines),
            digest.hasPrefix("sha256:")
        else { return .failure(NixQueryError(message: "skopeo pushed the image but wrote no digest")) }
        var result = ImagePushResult(outcome: .pushed, repository: repository, tags: tags, digest: digest)
        // What the registry stores (skopeo compresses the layers as it pushes): its manifest.
        if let inspected = try? await session.process(
            skopeo, ["--policy", policy, "inspect", "--raw", tls] + credentials + ["docker://\(repository)@\(digest)"],
            killGrace: settings.killGrace, confined: false, errorLine: collect),
            inspected.exitCode == 0,
            let manifest = (try? JSONSerialization.jsonObject(with: Data(inspected.standardOutput))) as? [String: Any]
        {
            let layers = (manifest["layers"] as? [[String: Any]] ?? []).compactMap { layer -> ImagePushResult.Layer? in
                guard let digest = layer["digest"] as? String, let size = (layer["size"] as? NSNumber)?.int64Value else { return nil }
                return ImagePushResult.Layer(digest: digest, size: size)
            }
            let configSize = ((manifest["config"] as? [String: Any])?["size"] as? NSNumber)?.int64Value ?? 0
            result.layers = layers
            result.size = configSize + layers.reduce(0) { $0 + $1.size }
        }
        return .success(result)
    }

    /// The uncompressed tarball of a compressed archive, or the one a stream script prints: made
    /// in the sandbox by a derivation whose builder is a static busybox that unpacks the archive,
    /// or runs the script, into `$out`.
    private func sandboxedArchive(from source: String, compressed: Bool, _ session: inout NixSession, _ binaries: NixBinaries) async
        -> Result<String, NixQueryError>
    {
        guard let busybox = ["/bin/busybox", "/usr/bin/busybox"].first(where: FileManager.default.isExecutableFile(atPath:)) else {
            return .failure(NixQueryError(message: "running an image script needs a static busybox at /bin/busybox (Debian: apt-get install busybox-static)"))
        }
        let directory = session.home + "/image-stream"
        do {
            // busybox picks its applet by its file name, so it keeps its name in a directory.
            try FileManager.default.createDirectory(atPath: directory + "/bin", withIntermediateDirectories: true)
            try FileManager.default.copyItem(atPath: busybox, toPath: directory + "/bin/busybox")
            try Data(ImageArchive.streamExpression.utf8).write(to: URL(fileURLWithPath: directory + "/stream.nix"))
        } catch {
            return .failure(NixQueryError(message: "could not prepare the image derivation under \(directory): \(error)"))
        }
        let log = session.log
        let toLog = { @Sendable (line: ArraySlice<UInt8>) in log.write(Array(line) + [0x0A]) }
        do {
            // Restricted evaluation reads only what -I allows: Kiln's expression and the source.
            let instantiated = try await session.process(
                binaries.nixInstantiate,
                [directory + "/stream.nix", "--argstr", "source", source, "--argstr", "kind", compressed ? "gzip" : "script",
                 "-I", directory, "-I", source] + optionArguments,
                killGrace: settings.killGrace, confined: false, errorLine: toLog)
            guard instantiated.exitCode == 0, let derivation = Self.storePaths(instantiated.standardOutput).first else {
                return .failure(NixQueryError(message: "could not make the image derivation: \(NixMessages.lastError(instantiated.errorTail))"))
            }
            let realised = try await session.process(
                binaries.nixStore, ["--realise", derivation] + optionArguments,
                killGrace: settings.killGrace, confined: false, errorLine: toLog)
            guard realised.exitCode == 0, let archive = Self.storePaths(realised.standardOutput).first else {
                return .failure(
                    NixQueryError(message: "\(compressed ? "unpacking the image" : "the image script") failed in the sandbox: \(NixMessages.lastError(realised.errorTail))"))
            }
            return .success(archive)
        } catch {
            return .failure(NixQueryError(message: "could not run nix for the image script: \(error)"))
        }
    }

    static func imageFailed(_ message: String, attempts: Int = 0) -> ImagePushResult {
        ImagePushResult(outcome: .failed, attempts: attempts, message: message)
    }

    /// skopeo on the fixed PATH nix gets, or nil.
    public static func findSkopeo() -> String? {
        ScrubbedEnvironment.systemPath.split(separator: ":").map { "\($0)/skopeo" }.first(where: FileManager.default.isExecutableFile(atPath:))
    }

    /// skopeo's last message, without its log prefix (`time="…" level=fatal msg="…"`).
    static func skopeoError(_ tail: [UInt8]) -> String {
        let text = String(decoding: tail, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        let last = text.split(whereSeparator: \.isNewline).last.map(String.init) ?? text
        if let start = last.range(of: "msg=\"") {
            var message = String(last[start.upperBound...])
            if message.hasSuffix("\"") { message.removeLast() }
            return message.replacingOccurrences(of: "\\\"", with: "\"")
        }
        return last.isEmpty ? "skopeo failed without a message" : last
    }
}

/// What a build output is, as far as images go.
enum ImageArchive {
    enum Kind: Equatable {
        /// A docker-archive tarball.
        case archive
        /// A gzip-compressed one (`buildLayeredImage`'s `.tar.gz`).
        case compressedArchive
        /// An executable script that writes one to its standard output.
        case streamScript
        /// Something else; says what.
        case other(String)
    }

    static func kind(of path: String) -> Kind {
        var status = stat()
        guard stat(path, &status) == 0 else { return .other("missing") }
        if status.st_mode & S_IFMT == S_IFDIR { return .other("a directory") }
        guard status.st_mode & S_IFMT == S_IFREG, let handle = FileHandle(forReadingAtPath: path) else { return .other("not a regular file") }
        defer { try? handle.close() }
        let head = [UInt8]((try? handle.read(upToCount: 512)) ?? Data())
        if head.starts(with: [0x1F, 0x8B]) { return .compressedArchive }
        if head.count >= 262, Array(head[257..<262]) == Array("ustar".utf8) { return .archive }
        if head.starts(with: Array("#!".utf8)), status.st_mode & 0o111 != 0 { return .streamScript }
        return .other("a file that is neither a docker-archive tarball nor an executable script")
    }

    /// The derivation that unpacks a gzip-compressed archive, or runs an image script, in the
    /// sandbox and keeps the tarball.
    static let streamExpression = """
        { source, kind }:
        derivation {
          name = "kiln-image.tar";
          inherit kind;
          system = builtins.currentSystem;
          builder = "${./bin}/busybox";
          source = builtins.storePath source;
          args = [ "sh" "-c" ''
            if [ "$kind" = gzip ]; then
              ${./bin}/busybox gunzip -c "$source" > "$out"
            else
              "$source" > "$out"
            fi
          '' ];
        }
        """
}
