// swift-tools-version: 6.1
import PackageDescription

// Dependencies point one way (see ../shared/STYLE.md):
// KilnPipeline <- KilnCore <- {KilnForges, KilnGit, KilnNix, KilnStore, KilnHTTP} <- KilnApp <- kiln
let package = Package(
    name: "kiln",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "kiln", targets: ["kiln"])
    ],
    dependencies: [
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1"),
        .package(url: "https://github.com/swift-server/async-http-client.git", from: "1.37.0"),
        .package(url: "https://github.com/apple/swift-crypto.git", "3.12.3"..<"5.0.0"),
        .package(url: "https://github.com/jpsim/Yams.git", from: "6.2.2"),
        .package(url: "https://github.com/groue/GRDB.swift.git", from: "7.10.0"),
        .package(url: "https://github.com/swiftlang/swift-subprocess.git", from: "1.0.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
    ],
    targets: [
        .systemLibrary(
            name: "CGit2",
            pkgConfig: "libgit2",
            providers: [.apt(["libgit2-dev"])]
        ),
        .target(
            name: "KilnPipeline",
            dependencies: [.product(name: "Yams", package: "Yams")]
        ),
        .target(
            name: "KilnCore",
            dependencies: [
                "KilnPipeline",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        .target(
            name: "KilnForges",
            dependencies: [
                "KilnCore",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "_CryptoExtras", package: "swift-crypto"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ]
        ),
        .target(name: "KilnGit", dependencies: ["KilnCore", "CGit2"]),
        .target(
            name: "KilnNix",
            dependencies: [
                "KilnCore",
                .product(name: "Subprocess", package: "swift-subprocess"),
            ]
        ),
        .target(
            name: "KilnStore",
            dependencies: ["KilnCore", .product(name: "GRDB", package: "GRDB.swift")]
        ),
        .target(
            name: "KilnHTTP",
            dependencies: [
                "KilnCore",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "NIOCore", package: "swift-nio"),
            ]
        ),
        .target(
            name: "KilnApp",
            dependencies: [
                "KilnPipeline", "KilnCore", "KilnForges", "KilnGit", "KilnNix", "KilnStore", "KilnHTTP",
                .product(name: "Yams", package: "Yams"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        .executableTarget(
            name: "kiln",
            dependencies: [
                "KilnApp",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .target(
            name: "KilnTesting",
            dependencies: [
                "KilnCore",
                "KilnForges",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "_CryptoExtras", package: "swift-crypto"),
                .product(name: "Subprocess", package: "swift-subprocess"),
            ]
        ),
        .executableTarget(
            name: "kiln-fuzz",
            dependencies: ["KilnPipeline", "KilnCore", "KilnForges", "KilnApp", .product(name: "Crypto", package: "swift-crypto")],
            swiftSettings: [.unsafeFlags(["-parse-as-library"])]
        ),
        .executableTarget(
            name: "kiln-bench",
            dependencies: [
                "KilnApp", "KilnNix", "KilnPipeline", "KilnCore", "KilnForges", "KilnStore", "KilnTesting",
                .product(name: "Hummingbird", package: "hummingbird"), .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"), .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            path: "bench/KilnBench"
        ),
        .testTarget(
            name: "KilnPipelineTests", dependencies: ["KilnPipeline"], exclude: ["Cases", "check_schema.py"]),
        .testTarget(name: "KilnCoreTests", dependencies: ["KilnCore"]),
        .testTarget(name: "KilnForgesTests", dependencies: ["KilnForges", "KilnTesting"]),
        .testTarget(name: "KilnGitTests", dependencies: ["KilnGit", "KilnTesting"]),
        .testTarget(name: "KilnNixTests", dependencies: ["KilnNix", "KilnTesting"]),
        .testTarget(
            name: "KilnStoreTests",
            dependencies: [
                "KilnStore", "KilnTesting", .product(name: "Logging", package: "swift-log"),
                .product(name: "GRDB", package: "GRDB.swift"),
            ]),
        .testTarget(name: "KilnAppTests", dependencies: ["KilnApp", "KilnTesting"]),
    ]
)
