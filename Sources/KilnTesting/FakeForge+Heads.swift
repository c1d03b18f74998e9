import Foundation
import Hummingbird
import Synchronization

/// The fake forge's reads: a repository (with its default branch), its branches and its open
/// pull requests, each forge's paging enforced (page sizes within the documented maximum)
/// and its answer shaped as the forge documents it.
extension FakeForge {
    /// An open pull request the fake lists.
    public struct PullRequest: Sendable, Hashable {
        /// Its number.
        public var number: Int
        /// The full head commit (Bitbucket Cloud lists 12 digits of it).
        public var head: String
        /// Source branch.
        public var branch: String
        /// Target branch.
        public var base: String
        /// The fork it comes from (`owner/name`); nil for a branch of the repository itself.
        public var fork: String?
        /// When it last changed.
        public var updatedAt: Date

        /// Creates one.
        public init(number: Int, head: String, branch: String, base: String, fork: String? = nil, updatedAt: Date = Date()) {
            self.number = number
            self.head = head
            self.branch = branch
            self.base = base
            self.fork = fork
            self.updatedAt = updatedAt
        }
    }

    /// What the fake lists for one repository.
    public struct Heads: Sendable, Hashable {
        /// The default branch.
        public var defaultBranch = "main"
        /// Branch names and heads, in listing order.
        public var branches: [(name: String, sha: String)] = []
        /// Open pull requests.
        public var pullRequests: [PullRequest] = []

        public static func == (a: Heads, b: Heads) -> Bool {
            a.defaultBranch == b.defaultBranch && a.pullRequests == b.pullRequests
                && a.branches.map { "\($0.name) \($0.sha)" } == b.branches.map { "\($0.name) \($0.sha)" }
        }

        public func hash(into hasher: inout Hasher) { hasher.combine(defaultBranch) }

        /// Creates heads.
        public init(defaultBranch: String = "main", branches: [(name: String, sha: String)] = [], pullRequests: [PullRequest] = []) {
            self.defaultBranch = defaultBranch
            self.branches = branches
            self.pullRequests = pullRequests
        }
    }

    /// Sets what the forge lists for `repository`.
    public func setHeads(_ repository: String, _ heads: Heads) { state.withLock { $0.heads[repository] = heads } }

    /// The reads (paths with queries) answered so far, in order.
    public var reads: [String] { state.withLock { $0.reads } }

    /// Answers a read, or nil when the request is not one (a status post's GET, such as check runs).
    func read(_ request: Request, _ parts: [String]) -> Response? {
        let query = request.uri.queryParameters
        func int(_ name: String) -> Int? { query.get(name).flatMap { Int($0) } }
        func pageSize(_ name: String, max: Int, default: Int) -> Int? {
            guard let text = query.get(name) else { return `default` }
            guard let size = Int(text), (1...max).contains(size) else { return nil }
            return size
        }
        let repository: String
        let list: String?
        switch kind {
        case .github where parts.count >= 3 && parts[0] == "repos":
            repository = "\(parts[1])/\(parts[2])"
            list = parts.count == 4 ? parts[3] : nil
            if parts.count > 4 { return nil }
        case .gitea where parts.count >= 5 && parts[0...2] == ["api", "v1", "repos"]:
            repository = "\(parts[3])/\(parts[4])"
            list = parts.count == 6 ? parts[5] : nil
            if parts.count > 6 { return nil }
        case .gitlab where parts.count >= 4 && parts[0...2] == ["api", "v4", "projects"]:
            repository = parts[3]
            list = parts.count == 6 && parts[4] == "repository" ? parts[5] : parts.count == 5 ? parts[4] : nil
            if parts.count > 6 || (parts.count == 6 && parts[4] != "repository") { return nil }
        case .bitbucketCloud where parts.count >= 4 && parts[0...1] == ["2.0", "repositories"]:
            repository = "\(parts[2])/\(parts[3])"
            list = parts.count == 6 && parts[4] == "refs" ? parts[5] : parts.count == 5 ? parts[4] : nil
            if parts.count > 6 || (parts.count == 6 && parts[4] != "refs") { return nil }
        case .bitbucketServer where parts.count >= 7 && parts[0...3] == ["rest", "api", "latest", "projects"] && parts[5] == "repos":
            repository = "\(parts[4])/\(parts[6])"
            list = parts.count == 8 ? parts[7] : nil
            if parts.count > 8 { return nil }
        default:
            return nil
        }
        guard authorized(request) else { return refuse(401, "Bad credentials") }
        guard request.headers[.userAgent] != nil else { return refuse(403, "a User-Agent is required") }
        guard repositories.contains(repository) else { return refuse(404, "Not Found") }
        let heads = state.withLock { state in
            state.reads.append(request.uri.description)
            return state.heads[repository] ?? Heads()
        }
        let stamp = ISO8601DateFormatter()
        func json(_ value: Any) -> Response {
            Response(status: .ok, body: .init(byteBuffer: ByteBuffer(bytes: try! JSONSerialization.data(withJSONObject: value))))
        }
        func slice<T>(_ items: [T], page: Int, size: Int) -> (items: [T], more: Bool) {
            let start = min(items.count, page * size)
            let end = min(items.count, start + size)
            return (Array(items[start..<end]), end < items.count)
        }
        let pulls = heads.pullRequests.sorted { $0.updatedAt > $1.updatedAt }
        let repoID = 1
        func forkID(_ pull: PullRequest) -> Int { pull.fork == nil ? repoID : 2 }

        switch (kind, list) {
        case (_, nil):
            // The repository, with its default branch in each forge's words.
            switch kind {
            case .github, .gitea: return json(["full_name": repository, "default_branch": heads.defaultBranch])
            case .gitlab: return json(["path_with_namespace": repository, "default_branch": heads.defaultBranch])
            case .bitbucketCloud: return json(["full_name": repository, "mainbranch": ["name": heads.defaultBranch, "type": "branch"]])
            case .bitbucketServer: return json(["slug": parts[6], "project": ["key": parts[4]]])
            }

        case (.github, "branches"), (.gitea, "branches"), (.gitlab, "branches"):
            let sizeName = kind == .gitea ? "limit" : "per_page"
            let page = int("page") ?? 1
            guard let size = pageSize(sizeName, max: kind == .gitea ? 50 : 100, default: 30), page >= 1 else {
                return refuse(422, "\(sizeName) or page out of range")
            }
            let shown = slice(heads.branches, page: page - 1, size: size).items
            return json(shown.map { branch in
                ["name": branch.name, "commit": kind == .github ? ["sha": branch.sha] : ["id": branch.sha]]
            })

        case (.github, "pulls"), (.gitea, "pulls"):
            guard query.get("state") == "open" else { return refuse(422, "list open pull requests only (state=open)") }
            let sizeName = kind == .gitea ? "limit" : "per_page"
            let page = int("page") ?? 1
            guard let size = pageSize(sizeName, max: kind == .gitea ? 50 : 100, default: 30), page >= 1 else {
                return refuse(422, "\(sizeName) or page out of range")
            }
            return json(slice(pulls, page: page - 1, size: size).items.map { pull in
                var head: [String: Any] = ["ref": pull.branch, "sha": pull.head, "repo": ["id": forkID(pull), "full_name": pull.fork ?? repository]]
                var base: [String: Any] = ["ref": pull.base, "sha": String(repeating: "0", count: 40), "repo": ["id": repoID, "full_name": repository]]
                if kind == .gitea {
                    head["repo_id"] = forkID(pull)
                    base["repo_id"] = repoID
                }
                return ["number": pull.number, "state": "open", "updated_at": stamp.string(from: pull.updatedAt), "head": head, "base": base]
            })

        case (.gitlab, "merge_requests"):
            guard query.get("state") == "opened" else { return refuse(400, "state must be opened") }
            let page = int("page") ?? 1
            guard let size = pageSize("per_page", max: 100, default: 20), page >= 1 else {
                return refuse(400, "per_page or page out of range")
            }
            var listed = pulls
            if let after = query.get("updated_after") {
                guard let date = stamp.date(from: after) else { return refuse(400, "updated_after is not an ISO 8601 time") }
                listed = listed.filter { $0.updatedAt > date }
            }
            return json(slice(listed, page: page - 1, size: size).items.map { pull in
                [
                    "iid": pull.number, "sha": pull.head, "source_branch": pull.branch, "target_branch": pull.base,
                    "source_project_id": forkID(pull), "target_project_id": repoID, "updated_at": stamp.string(from: pull.updatedAt),
                ] as [String: Any]
            })

        case (.bitbucketCloud, "branches"), (.bitbucketCloud, "pullrequests"):
            let isPulls = list == "pullrequests"
            if isPulls, query.get("state") != "OPEN" { return refuse(400, "state must be OPEN") }
            let page = int("page") ?? 1
            guard let size = pageSize("pagelen", max: isPulls ? 50 : 100, default: 10), page >= 1 else {
                return refuse(400, "pagelen or page out of range")
            }
            var body: [String: Any] = ["pagelen": size, "page": page]
            if isPulls {
                let shown = slice(pulls, page: page - 1, size: size)
                body["values"] = shown.items.map { (pull: PullRequest) -> [String: Any] in
                    let sourceRepository: [String: Any] = ["full_name": pull.fork ?? repository, "uuid": "{\(forkID(pull))}"]
                    let source: [String: Any] = [
                        "branch": ["name": pull.branch], "commit": ["hash": String(pull.head.prefix(12))], "repository": sourceRepository,
                    ]
                    let targetRepository: [String: Any] = ["full_name": repository, "uuid": "{\(repoID)}"]
                    let destination: [String: Any] = [
                        "branch": ["name": pull.base], "commit": ["hash": "000000000000"], "repository": targetRepository,
                    ]
                    return ["id": pull.number, "updated_on": stamp.string(from: pull.updatedAt), "source": source, "destination": destination]
                }
                if shown.more { body["next"] = "https://api.bitbucket.org/next-page-not-for-kiln" }
            } else {
                let shown = slice(heads.branches, page: page - 1, size: size)
                body["values"] = shown.items.map { ["name": $0.name, "target": ["hash": $0.sha]] }
                if shown.more { body["next"] = "https://api.bitbucket.org/next-page-not-for-kiln" }
            }
            return json(body)

        case (.bitbucketServer, "branches"), (.bitbucketServer, "pull-requests"):
            let isPulls = list == "pull-requests"
            if isPulls, query.get("state") != "OPEN" { return refuse(400, "state must be OPEN") }
            let start = int("start") ?? 0
            guard let size = pageSize("limit", max: 1000, default: 25), start >= 0 else {
                return refuse(400, "limit or start out of range")
            }
            let values: [[String: Any]]
            let more: Bool
            if isPulls {
                let all = pulls
                let end = min(all.count, start + size)
                more = end < all.count
                values = all[min(start, all.count)..<end].map { (pull: PullRequest) -> [String: Any] in
                    let fork = pull.fork?.split(separator: "/").map(String.init) ?? [parts[4], parts[6]]
                    return [
                        "id": pull.number, "updatedDate": Int(pull.updatedAt.timeIntervalSince1970 * 1000),
                        "fromRef": [
                            "displayId": pull.branch, "latestCommit": pull.head,
                            "repository": ["id": forkID(pull), "slug": fork[1], "project": ["key": fork[0]]],
                        ],
                        "toRef": [
                            "displayId": pull.base, "latestCommit": String(repeating: "0", count: 40),
                            "repository": ["id": repoID, "slug": parts[6], "project": ["key": parts[4]]],
                        ],
                    ] as [String: Any]
                }
            } else {
                let all = heads.branches
                let end = min(all.count, start + size)
                more = end < all.count
                values = all[min(start, all.count)..<end].map { (branch: (name: String, sha: String)) -> [String: Any] in
                    ["id": "refs/heads/\(branch.name)", "displayId": branch.name, "latestCommit": branch.sha, "isDefault": branch.name == heads.defaultBranch]
                }
            }
            var body: [String: Any] = ["size": values.count, "limit": size, "start": start, "isLastPage": !more, "values": values]
            if more { body["nextPageStart"] = start + values.count }
            return json(body)

        default:
            return nil
        }
    }
}
