import Foundation
import KilnCore
import KilnForges
import KilnNix
import KilnPipeline

/// The `nix` section: limits, options Kiln allows, remote builders, the binary cache.
extension ConfigReader {
    mutating func nix(_ node: YAMLNode?, path: [String]) -> KilnConfiguration.Nix? {
        let keys = mapping(node, Self.nixKeys)
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
                } else if let text = value.scalarText {
                    options[name] = text
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
            let cacheKeys = mapping(node, Self.cacheKeys)
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
        var allowedPaths: [String] = []
        if let node = keys["allowed-read-only-paths"], let items = yaml.stringList(node, allowSingle: false) {
            for (path, item) in items {
                var status = stat()
                if let problem = BuildConstraints.readOnlyPathProblem(path) {
                    yaml.report(item, problem, code: .invalidValue)
                } else if stat(path, &status) != 0 {
                    yaml.report(item, "no such path \(path)", code: .invalidValue)
                } else if status.st_mode & 0o002 != 0 {
                    // nix binds it as it is: the build users must not be able to write to it.
                    yaml.report(item, "\(path) is writable by everyone; a build could change it", code: .invalidValue)
                }
            }
            allowedPaths = items.map(\.0)
        }
        let sandboxShell = text(keys, "sandbox-shell", path).map(resolve) ?? "/bin/busybox"
        if keys["sandbox-shell"] != nil, !FileManager.default.isExecutableFile(atPath: sandboxShell) {
            report(keys["sandbox-shell"], path + ["sandbox-shell"], "\(sandboxShell) is not an executable file (it must be a static shell, such as Debian's busybox-static)")
        }
        var warm: [String] = []
        if let node = keys["warm"], let items = yaml.stringList(node, allowSingle: false) {
            for (installable, item) in items where installable.hasPrefix("-") || installable.isEmpty {
                yaml.report(item, "'\(installable)' is not an installable such as nixpkgs#hello or /nix/store/…drv", code: .invalidValue)
            }
            warm = items.map(\.0)
        }
        var sshOptions: [String] = []
        if let node = keys["ssh-options"], let items = yaml.stringList(node, allowSingle: false) {
            // nix splits NIX_SSHOPTS at white space: one word each, or it would not reach ssh as written.
            for (word, item) in items where word.isEmpty || word.contains(where: \.isWhitespace) {
                yaml.report(item, "'\(word)' must be one word without spaces; write -p and 2222 as two items", code: .invalidValue)
            }
            sshOptions = items.map(\.0)
        }
        var section = KilnConfiguration.Nix(
            settings: NixSettings(
                binary: binary, options: options, cache: cache, evalTimeout: evalTimeout,
                evalMaxMemoryKilobytes: evalMemory.map { max(1, $0 / 1024) }, maxParallelEvaluations: parallelEvals),
            maxParallelJobs: parallel,
            limits: JobLimits(defaultTimeout: defaultTimeout, maxTimeout: maxTimeout, defaultMaxSilent: defaultSilent))
        section.warm = warm
        section.settings.allowedReadOnlyPaths = allowedPaths
        section.settings.sandboxShell = sandboxShell
        section.settings.sshOptions = sshOptions
        section.limits.allowedReadOnlyPaths = Set(allowedPaths)
        return section
    }

    /// Keys that only some forge types take.
    static let typeKeys: [String: [KilnConfiguration.ForgeType]] = [
        "git-url": [.bitbucketCloud], "signing-token-files": [.gitlab], "token-kind": [.gitlab], "app-id": [.github],
        "app-private-key-file": [.github],
    ]
}
