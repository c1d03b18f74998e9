import Foundation
import KilnCore
import KilnPipeline

/// The `registries` section: where jobs' images are pushed.
extension ConfigReader {
    static let registryKeys = ["host", "auth-file", "tls-verify", "attempts", "fallback"]

    mutating func registries(_ node: YAMLNode?, path: [String]) -> [Registry]? {
        guard let node, !node.isNull else { return [] }
        guard let entries = yaml.mapping(node, allowed: nil) else { return nil }
        var registries: [Registry] = []
        for (name, value) in entries {
            let here = path + [name]
            let keys = mapping(value, Self.registryKeys)
            guard let host = text(keys, "host", here, required: true) else { continue }
            if host.range(of: #"^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?(:[0-9]{1,5})?$"#, options: .regularExpression) == nil {
                report(keys["host"], here + ["host"], "'\(host)' is not a registry host such as registry.example.org or 127.0.0.1:5000 (no scheme, no path)")
                continue
            }
            if registries.contains(where: { $0.host == host }) {
                report(keys["host"], here + ["host"], "another registry already has host \(host)")
            }
            let authFile = text(keys, "auth-file", here).map(resolve)
            if let authFile {
                if !FileManager.default.isReadableFile(atPath: authFile) {
                    report(keys["auth-file"], here + ["auth-file"], "cannot read \(authFile)")
                } else if let data = FileManager.default.contents(atPath: authFile),
                    (try? JSONSerialization.jsonObject(with: data) as? [String: Any])?["auths"] == nil
                {
                    report(keys["auth-file"], here + ["auth-file"], "\(authFile) is not a containers auth.json ({\"auths\": {\"\(host)\": {\"auth\": \"…\"}}})")
                }
            }
            let verifyText = text(keys, "tls-verify", here) ?? "true"
            if !["true", "false"].contains(verifyText) {
                report(keys["tls-verify"], here + ["tls-verify"], "'\(verifyText)' must be true or false")
            }
            let attempts = integer(keys, "attempts", here, in: 1...10) ?? 4
            registries.append(
                Registry(
                    name: name, host: host, authFile: authFile, tlsVerify: verifyText != "false", attempts: attempts,
                    fallback: text(keys, "fallback", here)))
        }
        for registry in registries {
            guard let fallback = registry.fallback else { continue }
            let keys = mapping(entries.first { $0.key == registry.name }?.value, Self.registryKeys)
            if fallback == registry.name || !registries.contains(where: { $0.name == fallback }) {
                report(keys["fallback"], path + [registry.name, "fallback"], "'\(fallback)' must name another entry of registries")
            }
        }
        return registries
    }

    static let buildServiceKeys = ["git-hosts", "templates-dir", "secrets-dir", "iglu-workdir", "iglu-slots", "cachix-hosts"]

    mutating func buildService(_ node: YAMLNode?, path: [String]) -> KilnConfiguration.BuildService {
        var settings = KilnConfiguration.BuildService()
        let keys = mapping(node, Self.buildServiceKeys)
        if let hosts = keys["git-hosts"], let items = yaml.stringList(hosts, allowSingle: false) {
            for (entry, item) in items {
                let plain = entry.range(of: #"^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$"#, options: .regularExpression) != nil
                let origin = entry.range(of: #"^(https?|ssh)://[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?(:[0-9]{1,5})?$"#, options: .regularExpression) != nil
                if !plain && !origin {
                    yaml.report(item, "'\(entry)' is neither a host (github.com) nor an origin (http://127.0.0.1:8081)", code: .invalidValue)
                }
            }
            settings.gitHosts = items.map(\.0)
        }
        settings.igluSlots = integer(keys, "iglu-slots", path, in: 1...64) ?? 1
        if let hosts = keys["cachix-hosts"], let items = yaml.stringList(hosts, allowSingle: false) {
            for (entry, item) in items
            where entry.range(of: #"^https?://[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?(:[0-9]{1,5})?$"#, options: .regularExpression) == nil {
                yaml.report(item, "'\(entry)' is not an origin such as https://cachix.org or http://127.0.0.1:8082", code: .invalidValue)
            }
            settings.cachixHosts = items.map(\.0)
        }
        for (key, keyPath) in [
            ("templates-dir", \KilnConfiguration.BuildService.templatesDirectory), ("secrets-dir", \.secretsDirectory),
            ("iglu-workdir", \.igluWorkdir),
        ] {
            guard let directory = text(keys, key, path).map(resolve) else { continue }
            var isDirectory: ObjCBool = false
            if !FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory) || !isDirectory.boolValue {
                report(keys[key], path + [key], "no such directory \(directory)")
            }
            settings[keyPath: keyPath] = directory
        }
        return settings
    }
}
