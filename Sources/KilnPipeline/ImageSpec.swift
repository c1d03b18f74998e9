import Foundation

/// A job's `image`: its build output is an OCI image (a docker-archive tarball, or a stream
/// script run in the sandbox) that Kiln pushes to a configured registry.
public struct ImageSpec: Sendable, Hashable, Codable {
    /// `registry.example.org/team/app` or `127.0.0.1:5000/app`: the registry's host, then the
    /// repository path.
    public var repository: String
    /// Tags, with `{build}`, `{timestamp}` and `{commit}` filled in at push time.
    public var tags: [String]
    /// A failed push fails the job (by default it is only reported).
    public var required: Bool

    /// The tags of a job that gives none.
    public static let defaultTags = ["{build}"]
    /// At most this many tags.
    public static let maxTags = 10

    /// Creates a spec.
    public init(repository: String, tags: [String] = defaultTags, required: Bool = false) {
        self.repository = repository
        self.tags = tags
        self.required = required
    }

    /// The registry's host (`registry.example.org`, `127.0.0.1:5000`).
    public var host: String { String(repository.prefix { $0 != "/" }) }
    /// The repository path within the registry (`team/app`).
    public var path: String { String(repository.drop { $0 != "/" }.dropFirst()) }

    /// What fills the placeholders of one push.
    public struct Placeholders: Sendable, Hashable {
        /// `{build}`: the build's number.
        public var build: String
        /// `{timestamp}`: when the push began, `20261130-071502` (UTC).
        public var timestamp: String
        /// `{commit}`: the commit's first 12 hex digits.
        public var commit: String

        /// Creates placeholders.
        public init(build: String, timestamp: String, commit: String) {
            self.build = build
            self.timestamp = timestamp
            self.commit = commit
        }

        /// `date` as `{timestamp}` writes it.
        public static func timestamp(_ date: Date) -> String {
            var calendar = Calendar(identifier: .gregorian)
            calendar.timeZone = TimeZone(identifier: "UTC")!
            let parts = calendar.dateComponents([.year, .month, .day, .hour, .minute, .second], from: date)
            let number = { (value: Int?, width: Int) in
                let text = String(value ?? 0)
                return String(repeating: "0", count: max(0, width - text.count)) + text
            }
            return number(parts.year, 4) + number(parts.month, 2) + number(parts.day, 2) + "-"
                + number(parts.hour, 2) + number(parts.minute, 2) + number(parts.second, 2)
        }

        /// Values of the same shape, for checking tags before a push.
        static let sample = Placeholders(build: "1234", timestamp: "20261130-071502", commit: "0123456789ab")
    }

    /// The tags with their placeholders filled in, duplicates removed, in order.
    public func tags(_ values: Placeholders) -> [String] {
        var seen: Set<String> = []
        return tags.map { Self.fill($0, values) }.filter { seen.insert($0).inserted }
    }

    static func fill(_ tag: String, _ values: Placeholders) -> String {
        tag.replacingOccurrences(of: "{build}", with: values.build)
            .replacingOccurrences(of: "{timestamp}", with: values.timestamp)
            .replacingOccurrences(of: "{commit}", with: values.commit)
    }

    /// Why `repository` cannot name an image repository, or nil when it can.
    public static func repositoryProblem(_ repository: String) -> String? {
        let example = "write it as HOST/PATH, such as registry.example.org/team/app or 127.0.0.1:5000/app"
        if repository.contains("://") { return "image repository '\(repository)' has a scheme; \(example)" }
        if repository.contains("@") { return "image repository '\(repository)' must not hold credentials or a digest; \(example)" }
        let parts = repository.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count >= 2, repository.count <= 255 else {
            return "image repository '\(repository)' must name its registry's host, then a path; \(example)"
        }
        let host = String(parts[0])
        if host.range(of: #"^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?(:[0-9]{1,5})?$"#, options: .regularExpression) == nil {
            return "image repository '\(repository)': '\(host)' is not a registry host; \(example)"
        }
        for component in parts.dropFirst()
        where component.range(of: #"^[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*$"#, options: .regularExpression) == nil {
            return "image repository '\(repository)': path component '\(component)' must be lower-case letters and digits, "
                + "separated by '.', '_' or '-' (no tag: give tags in 'tags')"
        }
        return nil
    }

    /// Why `tag` (before its placeholders are filled) cannot be an image tag, or nil when it can.
    public static func tagProblem(_ tag: String) -> String? {
        var rest = tag
        for placeholder in ["{build}", "{timestamp}", "{commit}"] { rest = rest.replacingOccurrences(of: placeholder, with: "") }
        if let open = rest.firstIndex(of: "{") {
            let name = rest[open...].prefix { $0 != "}" } + "}"
            return "tag '\(tag)' has the unknown placeholder '\(name)'; the placeholders are {build}, {timestamp} and {commit}"
        }
        let filled = fill(tag, .sample)
        if filled.range(of: #"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$"#, options: .regularExpression) == nil {
            return "tag '\(tag)' is not an image tag: letters, digits, '_', '.' and '-', not starting with '.' or '-', at most 128 characters"
        }
        return nil
    }
}

extension PipelineFile {
    static let imageKeys = ["repository", "tags", "required"]

    /// Decodes a job's `image` mapping.
    static func decodeImage(_ node: YAMLNode, _ reader: inout YAMLReader) -> ImageSpec? {
        guard let entries = reader.mapping(node, allowed: imageKeys) else { return nil }
        var image = ImageSpec(repository: "")
        var valid = true
        var repositorySeen = false
        for (key, value) in entries {
            switch key {
            case "repository":
                repositorySeen = true
                guard let text = reader.nonEmptyString(value) else {
                    valid = false
                    continue
                }
                if let problem = ImageSpec.repositoryProblem(text) {
                    reader.report(value, problem, code: .invalidValue)
                    valid = false
                }
                image.repository = text
            case "tags":
                guard let items = reader.stringList(value, allowSingle: true) else {
                    valid = false
                    continue
                }
                if items.isEmpty || items.count > ImageSpec.maxTags {
                    reader.report(value, "'\(value.pathString)' must list 1 to \(ImageSpec.maxTags) tags", code: .invalidValue)
                    valid = false
                }
                for (tag, itemNode) in items {
                    if let problem = ImageSpec.tagProblem(tag) {
                        reader.report(itemNode, problem, code: .invalidValue)
                        valid = false
                    }
                }
                image.tags = items.map(\.0)
            case "required":
                guard let flag = reader.bool(value) else {
                    valid = false
                    continue
                }
                image.required = flag
            default: break
            }
        }
        if !repositorySeen {
            reader.report(node, "'image' needs 'repository', such as registry.example.org/team/app", code: .missingKey)
            return nil
        }
        return valid ? image : nil
    }
}
