import Foundation
import KilnCore

// The heads of a repository, as each forge's API lists them (the reconciler's input).

extension GitHubForge {
    private struct RepositoryInfo: Decodable { var default_branch: String }
    private struct Branch: Decodable {
        struct Commit: Decodable { var sha: String }
        var name: String
        var commit: Commit
    }
    private struct Pull: Decodable {
        struct Repo: Decodable {
            var id: Int?
            var full_name: String?
        }
        struct Side: Decodable {
            var ref: String
            var sha: String
            var repo: Repo?
        }
        var number: Int
        var updated_at: String?
        var head: Side
        var base: Side
    }

    public func heads(of repository: String, pullRequestsUpdatedSince since: Date?) async throws(ForgeAPIError) -> ForgeHeads {
        guard let (owner, name) = ForgeHTTP.ownerAndName(repository) else {
            throw .rejected(status: 0, body: "repository '\(repository)' is not owner/name")
        }
        let token = try await token(for: repository)
        let headers = [
            ("Authorization", "Bearer \(token.value)"), ("Accept", "application/vnd.github+json"), ("X-GitHub-Api-Version", "2022-11-28"),
        ]
        let base = "\(settings.apiURL)/repos/\(owner)/\(name)"
        let info = try await api.object(RepositoryInfo.self, base, headers: headers)
        let branches = try await api.pages(headers: headers, url: { "\(base)/branches?per_page=100&page=\($0 + 1)" }) { body in
            let page = try JSONDecoder().decode([Branch].self, from: Data(body))
            return (page.map { BranchHead(name: $0.name, sha: $0.commit.sha) }, page.count == 100)
        }
        // Newest first: the listing stops at the first pull request older than `since`.
        let pulls = try await api.pages(
            headers: headers, url: { "\(base)/pulls?state=open&sort=updated&direction=desc&per_page=100&page=\($0 + 1)" },
            enough: ForgeDates.reached(since)
        ) { body in
            let page = try JSONDecoder().decode([Pull].self, from: Data(body))
            let pulls = page.map { pull in
                OpenPullRequest(
                    number: pull.number, headSHA: pull.head.sha, headBranch: pull.head.ref, baseBranch: pull.base.ref,
                    isFork: pull.head.repo?.id == nil || pull.head.repo?.id != pull.base.repo?.id,
                    headRepository: pull.head.repo?.full_name, updatedAt: ForgeDates.parse(pull.updated_at))
            }
            return (pulls, page.count == 100)
        }
        return ForgeHeads(
            defaultBranch: info.default_branch, branches: branches,
            pullRequests: ForgeDates.recent(pulls, since: since))
    }
}

extension GiteaForge {
    private struct RepositoryInfo: Decodable { var default_branch: String }
    private struct Branch: Decodable {
        struct Commit: Decodable { var id: String }
        var name: String
        var commit: Commit
    }
    private struct Pull: Decodable {
        struct Repo: Decodable { var full_name: String? }
        struct Side: Decodable {
            var ref: String
            var sha: String
            var repo_id: Int?
            var repo: Repo?
        }
        var number: Int
        var updated_at: String?
        var head: Side
        var base: Side
    }

    /// Gitea's largest page (its `MAX_RESPONSE_ITEMS` default).
    static let pageSize = 50

    public func heads(of repository: String, pullRequestsUpdatedSince since: Date?) async throws(ForgeAPIError) -> ForgeHeads {
        guard let token = settings.token else { throw .rejected(status: 0, body: "no token-file is configured for this Gitea forge") }
        guard let (owner, name) = ForgeHTTP.ownerAndName(repository) else {
            throw .rejected(status: 0, body: "repository '\(repository)' is not owner/name")
        }
        let headers = [("Authorization", "token \(token.value)")]
        let base = "\(settings.url)/api/v1/repos/\(owner)/\(name)"
        let size = Self.pageSize
        let info = try await api.object(RepositoryInfo.self, base, headers: headers)
        let branches = try await api.pages(headers: headers, url: { "\(base)/branches?page=\($0 + 1)&limit=\(size)" }) { body in
            let page = try JSONDecoder().decode([Branch].self, from: Data(body))
            return (page.map { BranchHead(name: $0.name, sha: $0.commit.id) }, page.count == size)
        }
        let pulls = try await api.pages(
            headers: headers, url: { "\(base)/pulls?state=open&sort=recentupdate&page=\($0 + 1)&limit=\(size)" },
            enough: ForgeDates.reached(since)
        ) { body in
            let page = try JSONDecoder().decode([Pull].self, from: Data(body))
            let pulls = page.map { pull in
                OpenPullRequest(
                    number: pull.number, headSHA: pull.head.sha, headBranch: pull.head.ref, baseBranch: pull.base.ref,
                    isFork: pull.head.repo_id == nil || pull.head.repo_id != pull.base.repo_id,
                    headRepository: pull.head.repo?.full_name, updatedAt: ForgeDates.parse(pull.updated_at))
            }
            return (pulls, page.count == size)
        }
        return ForgeHeads(
            defaultBranch: info.default_branch, branches: branches,
            pullRequests: ForgeDates.recent(pulls, since: since))
    }
}

extension GitLabForge {
    private struct ProjectInfo: Decodable { var default_branch: String? }
    private struct Branch: Decodable {
        struct Commit: Decodable { var id: String }
        var name: String
        var commit: Commit
    }
    private struct MergeRequest: Decodable {
        var iid: Int
        var sha: String?
        var source_branch: String
        var target_branch: String
        var source_project_id: Int?
        var target_project_id: Int?
        var updated_at: String?
    }

    public func heads(of repository: String, pullRequestsUpdatedSince since: Date?) async throws(ForgeAPIError) -> ForgeHeads {
        guard let token = settings.token else { throw .rejected(status: 0, body: "no token-file is configured for this GitLab forge") }
        let auth = settings.bearerToken ? ("Authorization", "Bearer \(token.value)") : ("PRIVATE-TOKEN", token.value)
        let headers = [auth]
        let base = "\(settings.url)/api/v4/projects/\(ForgeHTTP.segment(repository))"
        let info = try await api.object(ProjectInfo.self, base, headers: headers)
        let branches = try await api.pages(headers: headers, url: { "\(base)/repository/branches?per_page=100&page=\($0 + 1)" }) { body in
            let page = try JSONDecoder().decode([Branch].self, from: Data(body))
            return (page.map { BranchHead(name: $0.name, sha: $0.commit.id) }, page.count == 100)
        }
        let updatedAfter = since.map { "&updated_after=\(ForgeHTTP.segment(ForgeDates.format($0)))" } ?? ""
        let requests = try await api.pages(
            headers: headers, url: { "\(base)/merge_requests?state=opened&order_by=updated_at&sort=desc&per_page=100&page=\($0 + 1)\(updatedAfter)" }
        ) { body in
            let page = try JSONDecoder().decode([MergeRequest].self, from: Data(body))
            let pulls = page.compactMap { request -> OpenPullRequest? in
                // A merge request whose head is not known yet (being created) has no commit to build.
                guard let sha = request.sha else { return nil }
                return OpenPullRequest(
                    number: request.iid, headSHA: sha, headBranch: request.source_branch, baseBranch: request.target_branch,
                    isFork: request.source_project_id == nil || request.source_project_id != request.target_project_id,
                    updatedAt: ForgeDates.parse(request.updated_at))
            }
            return (pulls, page.count == 100)
        }
        return ForgeHeads(
            defaultBranch: info.default_branch ?? "", branches: branches,
            pullRequests: ForgeDates.recent(requests, since: since))
    }
}

extension BitbucketCloudForge {
    private struct RepositoryInfo: Decodable {
        struct Branch: Decodable { var name: String }
        var mainbranch: Branch?
    }
    private struct Page<Value: Decodable>: Decodable {
        var values: [Value]
        var next: String?
    }
    private struct Branch: Decodable {
        struct Target: Decodable { var hash: String }
        var name: String
        var target: Target
    }
    private struct Pull: Decodable {
        struct Named: Decodable { var name: String }
        struct Commit: Decodable { var hash: String }
        struct Repo: Decodable {
            var full_name: String?
            var uuid: String?
        }
        struct Side: Decodable {
            var branch: Named
            var commit: Commit?
            var repository: Repo?
        }
        var id: Int
        var updated_on: String?
        var source: Side
        var destination: Side
    }

    public func heads(of repository: String, pullRequestsUpdatedSince since: Date?) async throws(ForgeAPIError) -> ForgeHeads {
        guard let token = settings.token else {
            throw .rejected(status: 0, body: "no token-file is configured for this Bitbucket Cloud forge")
        }
        guard let (owner, name) = ForgeHTTP.ownerAndName(repository) else {
            throw .rejected(status: 0, body: "repository '\(repository)' is not owner/name")
        }
        let headers = [("Authorization", "Bearer \(token.value)")]
        let base = "\(settings.apiURL)/2.0/repositories/\(owner)/\(name)"
        let info = try await api.object(RepositoryInfo.self, base, headers: headers)
        // Pages are asked for by number: the answer's `next` address is the forge's to choose, not Kiln's to follow.
        let branches = try await api.pages(headers: headers, url: { "\(base)/refs/branches?pagelen=100&page=\($0 + 1)" }) { body in
            let page = try JSONDecoder().decode(Page<Branch>.self, from: Data(body))
            return (page.values.map { BranchHead(name: $0.name, sha: $0.target.hash) }, page.next != nil)
        }
        let pulls = try await api.pages(
            headers: headers, url: { "\(base)/pullrequests?state=OPEN&sort=-updated_on&pagelen=50&page=\($0 + 1)" },
            enough: ForgeDates.reached(since)
        ) { body in
            let page = try JSONDecoder().decode(Page<Pull>.self, from: Data(body))
            let pulls = page.values.compactMap { pull -> OpenPullRequest? in
                guard let hash = pull.source.commit?.hash else { return nil }
                let source = pull.source.repository?.uuid
                return OpenPullRequest(
                    number: pull.id, headSHA: hash, headBranch: pull.source.branch.name, baseBranch: pull.destination.branch.name,
                    isFork: source == nil || source != pull.destination.repository?.uuid,
                    headRepository: pull.source.repository?.full_name, updatedAt: ForgeDates.parse(pull.updated_on))
            }
            return (pulls, page.next != nil)
        }
        return ForgeHeads(
            defaultBranch: info.mainbranch?.name ?? "", branches: branches,
            pullRequests: ForgeDates.recent(pulls, since: since))
    }
}

extension BitbucketServerForge {
    private struct Page<Value: Decodable>: Decodable {
        var values: [Value]
        var isLastPage: Bool
    }
    private struct Branch: Decodable {
        var displayId: String
        var latestCommit: String
        var isDefault: Bool?
    }
    private struct Pull: Decodable {
        struct Project: Decodable { var key: String }
        struct Repo: Decodable {
            var id: Int?
            var slug: String?
            var project: Project?
        }
        struct Side: Decodable {
            var displayId: String
            var latestCommit: String
            var repository: Repo?
        }
        var id: Int
        var updatedDate: Double?
        var fromRef: Side
        var toRef: Side
    }

    public func heads(of repository: String, pullRequestsUpdatedSince since: Date?) async throws(ForgeAPIError) -> ForgeHeads {
        guard let token = settings.token else {
            throw .rejected(status: 0, body: "no token-file is configured for this Bitbucket Data Center forge")
        }
        guard let (project, slug) = ForgeHTTP.ownerAndName(repository) else {
            throw .rejected(status: 0, body: "repository '\(repository)' is not PROJECT/slug")
        }
        let headers = [("Authorization", "Bearer \(token.value)")]
        let base = "\(settings.url)/rest/api/latest/projects/\(project)/repos/\(slug)"
        let branchPages = try await api.pages(headers: headers, url: { "\(base)/branches?start=\($0 * 100)&limit=100" }) { body in
            let page = try JSONDecoder().decode(Page<Branch>.self, from: Data(body))
            return (page.values, !page.isLastPage)
        }
        let pulls = try await api.pages(
            headers: headers, url: { "\(base)/pull-requests?state=OPEN&order=NEWEST&start=\($0 * 100)&limit=100" }
        ) { body in
            let page = try JSONDecoder().decode(Page<Pull>.self, from: Data(body))
            let pulls = page.values.map { pull in
                let from = pull.fromRef.repository
                let fork = from.flatMap { repo in repo.project.flatMap { project in repo.slug.map { "\(project.key)/\($0)" } } }
                let isFork = from?.id == nil || from?.id != pull.toRef.repository?.id
                return OpenPullRequest(
                    number: pull.id, headSHA: pull.fromRef.latestCommit, headBranch: pull.fromRef.displayId,
                    baseBranch: pull.toRef.displayId, isFork: isFork, headRepository: isFork ? fork : nil,
                    updatedAt: pull.updatedDate.map { Date(timeIntervalSince1970: $0 / 1000) })
            }
            return (pulls, !page.isLastPage)
        }
        return ForgeHeads(
            defaultBranch: branchPages.first { $0.isDefault == true }?.displayId ?? "",
            branches: branchPages.map { BranchHead(name: $0.displayId, sha: $0.latestCommit) },
            pullRequests: ForgeDates.recent(pulls, since: since))
    }
}
