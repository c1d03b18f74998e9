import Foundation
import KilnCore
import KilnForges
import KilnNix
import KilnPipeline

/// The `forges` section: each forge's type, URLs, secrets and status API.
extension ConfigReader {
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
        if name == BuildService.forge {
            yaml.report(value, "forge name '\(name)' is Kiln's own, for ad-hoc builds; choose another", code: .invalidValue)
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
        var app: (id: String, key: Secret)?
        if let appID = text(keys, "app-id", here) {
            if let keyPath = text(keys, "app-private-key-file", here, required: true),
                let privateKey = readSecret(keyPath, keys["app-private-key-file"], here + ["app-private-key-file"])
            {
                app = (appID, privateKey)
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
        let settings: KilnConfiguration.ForgeSettings
        switch type {
        case .github:
            var credentials: GitHubForge.Credentials = token.map { .token($0) } ?? .none
            if let app {
                do {
                    credentials = .app(try GitHubApp(appID: app.id, privateKeyPEM: app.key.value, apiURL: apiURL))
                } catch {
                    report(keys["app-private-key-file"], here + ["app-private-key-file"], "is not an RSA private key in PEM form")
                    return nil
                }
            }
            settings = .github(
                GitHubForge.Settings(apiURL: apiURL, webhookSecrets: secrets, credentials: credentials, checkRuns: statusAPI == .checks))
        case .gitlab:
            settings = .gitlab(
                GitLabForge.Settings(
                    url: apiURL, webhookSecrets: secrets, signingTokens: signingTokens, token: token, bearerToken: kind == "bearer"))
        case .bitbucketCloud:
            settings = .bitbucketCloud(BitbucketCloudForge.Settings(apiURL: apiURL, webhookSecrets: secrets, token: token), gitURL: gitURL)
        case .bitbucketServer:
            settings = .bitbucketServer(BitbucketServerForge.Settings(url: apiURL, webhookSecrets: secrets, token: token))
        case .gitea:
            settings = .gitea(GiteaForge.Settings(url: apiURL, webhookSecrets: secrets, token: token))
        }
        return KilnConfiguration.Forge(name: here.last ?? "", statusAPI: statusAPI, settings: settings)
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
        if let count = node.sequenceCount { return count == 0 }
        return false
    }

    mutating func secretList(_ keys: [String: YAMLNode], _ key: String, _ path: [String]) -> [Secret] {
        guard let list = keys[key] else { return [] }
        return (yaml.stringList(list, allowSingle: true) ?? []).compactMap { secretPath, item in
            readSecret(secretPath, item, item.path)
        }
    }
}
