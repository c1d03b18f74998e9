import KilnPipeline

/// A registry images are pushed to (`registries.NAME` in the server configuration).
public struct Registry: Sendable, Hashable {
    /// Its name in the configuration.
    public var name: String
    /// `registry.example.org` or `127.0.0.1:5000`: what a job's `image.repository` starts with.
    public var host: String
    /// A containers auth.json with the credentials for `host`; nil for a registry without them.
    public var authFile: String?
    /// Verify the registry's TLS certificate (false only for an internal or loopback registry,
    /// which then is spoken to over plain HTTP).
    public var tlsVerify: Bool
    /// Push attempts before giving up (or turning to `fallback`), with 1 s, 2 s, 4 s… between.
    public var attempts: Int
    /// The name of the registry to push to when every attempt failed.
    public var fallback: String?

    /// Creates a registry.
    public init(name: String, host: String, authFile: String? = nil, tlsVerify: Bool = true, attempts: Int = 4, fallback: String? = nil) {
        self.name = name
        self.host = host
        self.authFile = authFile
        self.tlsVerify = tlsVerify
        self.attempts = attempts
        self.fallback = fallback
    }
}

/// What a job's run pushes: its output as an image, to a registry (and its fallback).
public struct ImagePush: Sendable, Hashable {
    /// The repository path within the registry (`team/app`).
    public var path: String
    /// The tags, placeholders filled in.
    public var tags: [String]
    /// A failed push fails the job.
    public var required: Bool
    /// Where it goes first.
    public var registry: Registry
    /// Where it goes when every attempt at `registry` failed.
    public var fallback: Registry?

    /// Creates a push.
    public init(path: String, tags: [String], required: Bool, registry: Registry, fallback: Registry? = nil) {
        self.path = path
        self.tags = tags
        self.required = required
        self.registry = registry
        self.fallback = fallback
    }

    /// The push a job's `image` asks for, to the registry configured for its host (nil when none is).
    public static func resolve(_ image: ImageSpec, values: ImageSpec.Placeholders, registries: [Registry]) -> ImagePush? {
        guard let registry = registries.first(where: { $0.host == image.host }) else { return nil }
        let fallback = registry.fallback.flatMap { name in registries.first { $0.name == name } }
        return ImagePush(path: image.path, tags: image.tags(values), required: image.required, registry: registry, fallback: fallback)
    }
}

/// What became of pushing a job's image.
public struct ImagePushResult: Sendable, Hashable, Codable {
    /// How it ended.
    public enum Outcome: String, Sendable, Hashable, Codable {
        /// In the registry (or its fallback).
        case pushed
        /// Not tried: the build is not trusted, or the job failed.
        case notPushed = "not_pushed"
        /// Every attempt failed.
        case failed
    }

    /// One layer of the pushed image.
    public struct Layer: Sendable, Hashable, Codable {
        /// `sha256:…` of the layer as stored in the registry.
        public var digest: String
        /// Its size in bytes.
        public var size: Int64

        /// Creates a layer.
        public init(digest: String, size: Int64) {
            self.digest = digest
            self.size = size
        }
    }

    /// How it ended.
    public var outcome: Outcome
    /// `host/path` it went to (the fallback's host when it went there).
    public var repository: String?
    /// The tags pushed.
    public var tags: [String]
    /// The manifest digest the registry stores (`sha256:…`).
    public var digest: String?
    /// The image's size: its config and layers, in bytes.
    public var size: Int64?
    /// Its layers, bottom first.
    public var layers: [Layer]
    /// Attempts made, over both registries.
    public var attempts: Int
    /// It went to the fallback registry, after every attempt at the first one failed.
    public var usedFallback: Bool
    /// Why it was not pushed, or the last error.
    public var message: String?

    /// Creates a result.
    public init(
        outcome: Outcome, repository: String? = nil, tags: [String] = [], digest: String? = nil, size: Int64? = nil,
        layers: [Layer] = [], attempts: Int = 0, usedFallback: Bool = false, message: String? = nil
    ) {
        self.outcome = outcome
        self.repository = repository
        self.tags = tags
        self.digest = digest
        self.size = size
        self.layers = layers
        self.attempts = attempts
        self.usedFallback = usedFallback
        self.message = message
    }

    /// Not pushed, and why.
    public static func notPushed(_ reason: String) -> ImagePushResult { ImagePushResult(outcome: .notPushed, message: reason) }

    /// A sentence for pages, logs and the API.
    public var summary: String {
        switch outcome {
        case .pushed:
            let size = self.size.map { ", " + ByteCount.format(Int($0)) } ?? ""
            let layerCount = layers.count == 1 ? "1 layer" : "\(layers.count) layers"
            var text = "pushed \(repository ?? ""):\(tags.joined(separator: ",")) (\(digest ?? "no digest")\(size), \(layerCount))"
            if usedFallback { text += " to the fallback registry" + (message.map { " (the first refused: \($0))" } ?? "") }
            return text
        case .notPushed: return "image not pushed: \(message ?? "")"
        case .failed: return "image push failed after \(attempts) attempt\(attempts == 1 ? "" : "s"): \(message ?? "")"
        }
    }

    /// A short form for a status description: `image sha256:0123456789ab`.
    public var brief: String? {
        guard outcome == .pushed, let digest else { return outcome == .failed ? "image push failed" : nil }
        return "image " + String(digest.prefix(19))
    }
}
