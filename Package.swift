// swift-tools-version:6.2
import PackageDescription

let strictSettings: [SwiftSetting] = [
    .swiftLanguageMode(.v6),
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
    .enableUpcomingFeature("NonisolatedNonsendingByDefault"),
]

let package = Package(
    name: "courier",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "Courier", targets: ["Courier"]),
        .library(name: "CourierCore", targets: ["CourierCore"]),
        .library(name: "CourierTCP", targets: ["CourierTCP"]),
        .library(name: "CourierKafka", targets: ["CourierKafka"]),
        .library(name: "CourierRedis", targets: ["CourierRedis"]),
        .library(name: "CourierTesting", targets: ["CourierTesting"]),
        .executable(name: "courier", targets: ["CourierCLI"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        // `courier bench` only: latency percentiles.
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift.git", from: "0.2.0"),
    ],
    targets: [
        // Transport-neutral model: JSON, patterns, errors, packets, correlation, transport seams.
        .target(
            name: "CourierCore",
            dependencies: [
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strictSettings
        ),
        // The user-facing API: Microservice (a Service), handler registration, Client.
        .target(
            name: "Courier",
            dependencies: [
                "CourierCore",
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strictSettings
        ),
        // NestJS-compatible TCP transporter on SwiftNIO.
        .target(
            name: "CourierTCP",
            dependencies: [
                "CourierCore",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            swiftSettings: strictSettings
        ),
        // The system librdkafka (Debian `librdkafka-dev` 2.0.2), including its mock cluster header.
        .systemLibrary(
            name: "CRdKafka",
            pkgConfig: "rdkafka",
            providers: [.apt(["librdkafka-dev"])]
        ),
        // Kafka transporter: a bridge over the system librdkafka (handles, poll threads, mock cluster).
        .target(
            name: "CourierKafka",
            dependencies: [
                "CourierCore",
                "CRdKafka",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strictSettings
        ),
        // The system hiredis (Debian `libhiredis-dev` 0.14.1): its RESP reader and command encoder only.
        .systemLibrary(
            name: "CHiredis",
            // No pkgConfig: hiredis's .pc adds -D_FILE_OFFSET_BITS=64, which SwiftPM refuses with a warning; the
            // headers are in the default include path (<hiredis/…>) and the module map links libhiredis.
            providers: [.apt(["libhiredis-dev"])]
        ),
        // Redis connection layer: SwiftNIO owns the socket; hiredis parses replies and encodes commands.
        .target(
            name: "CourierRedis",
            dependencies: [
                "CourierCore",
                "CHiredis",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strictSettings
        ),
        // In-memory transport for users' unit tests, and the transport conformance suite.
        .target(
            name: "CourierTesting",
            dependencies: [
                "Courier", "CourierExample",
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strictSettings
        ),
        // The example service every transport serves identically (math.sum, math.countdown, ...).
        .target(
            name: "CourierExample",
            dependencies: ["Courier"],
            swiftSettings: strictSettings
        ),
        .executableTarget(
            name: "CourierCLI",
            dependencies: [
                "Courier",
                "CourierTCP",
                "CourierKafka",
                "CourierRedis",
                "CourierExample",
                "CRdKafka",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Histogram", package: "hdrhistogram-swift"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            swiftSettings: strictSettings
        ),
        // What the test targets share: keeping blocking and CPU-heavy test work off Swift concurrency's pool.
        .target(name: "CourierTestSupport", path: "Tests/CourierTestSupport", swiftSettings: strictSettings),
        .testTarget(
            name: "CourierCoreTests",
            dependencies: ["CourierCore", "CourierTestSupport"],
            swiftSettings: strictSettings
        ),
        .testTarget(
            name: "CourierTests",
            dependencies: ["Courier", "CourierTesting", "CourierExample"],
            swiftSettings: strictSettings
        ),
        .testTarget(
            name: "CourierTCPTests",
            dependencies: [
                "CourierTCP", "CourierTesting", "CourierExample", "CourierTestSupport",
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
            ],
            swiftSettings: strictSettings
        ),
        .testTarget(
            name: "CourierRedisTests",
            dependencies: [
                // CourierCLI so the `courier` binary is built next to the tests (worker processes).
                "CourierRedis", "CourierCore", "Courier", "CourierTesting", "CourierExample", "CourierCLI", "CourierTCP",
                "CourierTestSupport",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
            ],
            swiftSettings: strictSettings
        ),
        .testTarget(
            name: "CourierCLITests",
            dependencies: ["CourierCLI", "CourierTestSupport"],
            swiftSettings: strictSettings
        ),
        // CourierCLI is a dependency so the `courier` binary is built next to the tests (dev-broker tests).
        .testTarget(
            name: "CourierKafkaTests",
            dependencies: [
                "CourierKafka", "CourierCLI", "CRdKafka", "Courier", "CourierExample", "CourierTesting",
                "CourierTestSupport",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strictSettings
        ),
    ]
)
