/// Matches request paths to configured routes by whole path segments (SPEC §2).
///
/// Route `/hooks/github` takes `/hooks/github` and `/hooks/github/...`, never
/// `/hooks/githubx`; route `/` takes every path; the longest matching route wins.
public struct RouteTable: Sendable {
    /// A matched route and the part of the path after its prefix (what the forwarder appends
    /// to the upstream URL).
    public struct Match: Sendable, Equatable {
        public var route: RouteConfig
        public var remainder: Substring
    }

    /// Routes, longest path first, so the first match is the longest.
    private let routes: [RouteConfig]

    public init(routes: [RouteConfig]) {
        self.routes = routes.sorted { $0.path.utf8.count > $1.path.utf8.count }
    }

    /// The route for `path` (without the query string), or nil when none matches.
    public func match(path: Substring) -> Match? {
        for route in routes {
            if route.path == "/" {
                return Match(route: route, remainder: path)
            }
            guard path.hasPrefix(route.path) else { continue }
            let rest = path.dropFirst(route.path.count)
            if rest.isEmpty || rest.first == "/" {
                return Match(route: route, remainder: rest)
            }
        }
        return nil
    }
}
