// swift-tools-version: 6.2
// The NIO floor of scripts/bench/floor.sh: a minimal HTTP/1.1 server on SwiftNIO that answers
// every request like Waypost's intake, without a journal (see Sources/floor-nio/main.swift).
// floor.sh builds it with
//   swift build -c release --package-path scripts/bench/floor/nio --scratch-path bench-out/floor-nio-build
// so that no .build lands in the repository. Waypost's own dependency on swift-nio has the
// same lower bound; the report prints both resolved versions.
import PackageDescription

let package = Package(
    name: "floor-nio",
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2")
    ],
    targets: [
        .executableTarget(
            name: "floor-nio",
            dependencies: [
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ]
        )
    ]
)
