import Testing
import WaypostCore

/// A route with the given path; its name is the path, so a test can tell which route matched.
private func route(_ path: String) -> RouteConfig {
    RouteConfig(name: "route\(path)", path: path, upstream: "http://127.0.0.1:9000")
}

/// The same routes in two orders: the table must not depend on the order of the file.
private let catchAllRoutes: [[RouteConfig]] = [
    ["/", "/hooks", "/hooks/github", "/hooks/gitlab", "/a/b/c"].map(route),
    ["/a/b/c", "/hooks/gitlab", "/hooks/github", "/hooks", "/"].map(route),
]

private let routesWithoutRoot: [[RouteConfig]] = [
    ["/hooks/github", "/a/b", "/stripe"].map(route),
    ["/stripe", "/a/b", "/hooks/github"].map(route),
]

@Suite struct RouteTableTests {

    /// (request path, the route that takes it, the remainder appended to the upstream URL).
    @Test(
        "the longest route matching whole segments wins; / takes the rest",
        arguments: [
            ("/hooks/github", "/hooks/github", ""),
            ("/hooks/github/", "/hooks/github", "/"),
            ("/hooks/github/push", "/hooks/github", "/push"),
            ("/hooks/github/push/deep/er", "/hooks/github", "/push/deep/er"),
            ("/hooks/github//x", "/hooks/github", "//x"),
            ("/hooks/githubx", "/hooks", "/githubx"),
            ("/hooks/github-enterprise/x", "/hooks", "/github-enterprise/x"),
            ("/hooks/git", "/hooks", "/git"),
            ("/hooks/gitlab/merge", "/hooks/gitlab", "/merge"),
            ("/hooks", "/hooks", ""),
            ("/hooks/", "/hooks", "/"),
            ("/hooksx", "/", "/hooksx"),
            ("/hook", "/", "/hook"),
            ("/", "/", "/"),
            ("/other/path", "/", "/other/path"),
            ("/HOOKS/github", "/", "/HOOKS/github"),
            ("/a/b", "/", "/a/b"),
            ("/a/b/c", "/a/b/c", ""),
            ("/a/b/cd", "/", "/a/b/cd"),
            ("/a/b/c/d", "/a/b/c", "/d"),
        ] as [(String, String, String)],
        catchAllRoutes
    )
    func matchesWithCatchAll(path: (String, String, String), routes: [RouteConfig]) throws {
        let (requestPath, expectedRoute, expectedRemainder) = path
        let table = RouteTable(routes: routes)
        let match = try #require(table.match(path: Substring(requestPath)))
        #expect(match.route.path == expectedRoute)
        #expect(match.route.name == "route\(expectedRoute)")
        #expect(match.remainder == Substring(expectedRemainder))
    }

    /// Without a `/` route, a path no route takes by whole segments has no match (→ 404).
    @Test(
        "no / route: unmatched paths give nil",
        arguments: [
            ("/hooks/github", "/hooks/github", ""),
            ("/hooks/github/push", "/hooks/github", "/push"),
            ("/hooks/githubx", nil, nil),
            ("/hooks/git", nil, nil),
            ("/hooks", nil, nil),
            ("/hooks/", nil, nil),
            ("/", nil, nil),
            ("", nil, nil),
            ("/a", nil, nil),
            ("/a/bc", nil, nil),
            ("/a/b/c", "/a/b", "/c"),
            ("/stripe", "/stripe", ""),
            ("/stripe?x=1", nil, nil),
            ("/Stripe", nil, nil),
            ("/x/stripe", nil, nil),
        ] as [(String, String?, String?)],
        routesWithoutRoot
    )
    func matchesWithoutCatchAll(path: (String, String?, String?), routes: [RouteConfig]) {
        let (requestPath, expectedRoute, expectedRemainder) = path
        let match = RouteTable(routes: routes).match(path: Substring(requestPath))
        #expect(match?.route.path == expectedRoute)
        #expect(match.map { String($0.remainder) } == expectedRemainder)
    }

    @Test func emptyTableMatchesNothing() {
        let table = RouteTable(routes: [])
        #expect(table.match(path: "/") == nil)
        #expect(table.match(path: "/hooks/github") == nil)
    }

    /// The matched route is the configured value, with all its settings, not just its path.
    @Test func matchCarriesTheWholeRoute() throws {
        let github = RouteConfig(
            name: "github", path: "/hooks/github", upstream: "https://integration.internal/github",
            mode: .sync, ordering: .key, orderingKey: .header("X-GitHub-Repository-Id"))
        let table = RouteTable(routes: [route("/"), github])
        let match = try #require(table.match(path: "/hooks/github/push"))
        #expect(match.route == github)
        #expect(match.remainder == "/push")
    }

    /// The path passed in may be a slice of a longer string (the request target before `?`).
    @Test func matchesASliceOfALongerTarget() throws {
        let target = "/hooks/github/push?delivery=1"
        let path = target[..<target.firstIndex(of: "?")!]
        let match = try #require(RouteTable(routes: [route("/hooks/github")]).match(path: path))
        #expect(match.route.path == "/hooks/github")
        #expect(match.remainder == "/push")
        #expect(String(match.remainder) + "?delivery=1" == "/push?delivery=1")
    }
}
