import Foundation
import Hummingbird
import KilnCore

/// `?repository=`, `?branch=`, `?state=`, `?before=` and `?limit=` of the build lists, page and API alike.
enum BuildListParameters {
    /// The query a request asks for, or what is wrong with it.
    static func query(_ request: Request, forge: String? = nil, repository: String? = nil, defaultLimit: Int = 50)
        -> Result<BuildListQuery, BadParameter>
    {
        let parameters = request.uri.queryParameters
        func value(_ name: String) -> String? {
            guard let text = parameters.get(name), !text.isEmpty else { return nil }
            return text
        }
        var query = BuildListQuery(forge: forge, repository: repository ?? value("repository"), branch: value("branch"), limit: defaultLimit)
        if let state = value("state") {
            guard let parsed = BuildState(rawValue: state) else {
                return .failure(BadParameter("'state' must be one of: \(BuildState.allCases.map(\.rawValue).joined(separator: ", "))"))
            }
            query.state = parsed
        }
        if let before = value("before") {
            guard let id = BuildID(before), id > 0 else { return .failure(BadParameter("'before' must be a build id")) }
            query.before = id
        }
        if let limit = value("limit") {
            guard let count = Int(limit), (1...200).contains(count) else { return .failure(BadParameter("'limit' must be 1 to 200")) }
            query.limit = count
        }
        return .success(query)
    }

    /// The link to the next page after `builds`, when the page was full; `path` with the same filters.
    static func next(_ path: String, _ query: BuildListQuery, _ builds: [BuildRecord], includeRepository: Bool = true) -> String? {
        guard builds.count == query.limit, let last = builds.last else { return nil }
        var items: [URLQueryItem] = []
        if includeRepository, let repository = query.repository { items.append(URLQueryItem(name: "repository", value: repository)) }
        if let branch = query.branch { items.append(URLQueryItem(name: "branch", value: branch)) }
        if let state = query.state { items.append(URLQueryItem(name: "state", value: state.rawValue)) }
        items.append(URLQueryItem(name: "before", value: String(last.id)))
        var components = URLComponents()
        components.path = path
        components.queryItems = items
        return components.string
    }

    /// A request parameter that cannot be used, and why.
    struct BadParameter: Error {
        var message: String
        init(_ message: String) { self.message = message }
    }
}
