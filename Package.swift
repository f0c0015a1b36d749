// swift-tools-version:6.0
import PackageDescription

// C libraries enter through one system-library target each (a modulemap and a shim.h);
// the Swift file that owns each library's pointers lives in the library that uses it.
let package = Package(
    name: "Stowage",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "stowage", targets: ["stowage"]),
        .executable(name: "stowage-agent", targets: ["NodeAgent"]),
        .library(name: "Topology", targets: ["Topology"]),
        .library(name: "Coordinator", targets: ["Coordinator"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.0.0"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.0"),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.0.0"),
    ],
    targets: [
        .systemLibrary(name: "CLibPQ", path: "Sources/CLibPQ", pkgConfig: "libpq",
                       providers: [.apt(["libpq-dev"])]),
        .systemLibrary(name: "CMariaDB", path: "Sources/CMariaDB", pkgConfig: "libmariadb",
                       providers: [.apt(["libmariadb-dev"])]),
        // hiredis' .pc adds -D_FILE_OFFSET_BITS=64, which SwiftPM rejects: no pkgConfig here.
        .systemLibrary(name: "CHiredis", path: "Sources/CHiredis",
                       providers: [.apt(["libhiredis-dev"])]),
        .systemLibrary(name: "CLibSSH2", path: "Sources/CLibSSH2", pkgConfig: "libssh2",
                       providers: [.apt(["libssh2-1-dev"])]),
        .systemLibrary(name: "CZstd", path: "Sources/CZstd", pkgConfig: "libzstd",
                       providers: [.apt(["libzstd-dev"])]),

        // Threads for blocking C calls, deadlines.
        .target(name: "Support"),
        .target(name: "Topology", dependencies: ["CLibPQ", "CMariaDB", "CHiredis", "Support"]),
        .target(name: "Coordinator", dependencies: [
            "Topology", "AgentProtocol", "CLibSSH2", "Support", "Repository", "Engines",
            .product(name: "Crypto", package: "swift-crypto"),
            .product(name: "Yams", package: "Yams"),
            .product(name: "GRDB", package: "GRDB.swift"),
        ]),
        // Built for nodes with `--static-swift-stdlib` (scripts/setup.sh): it needs only libc.
        // FoundationEssentials, not Foundation: no ICU, a smaller static binary.
        .executableTarget(name: "NodeAgent", dependencies: [
            "CZstd", "AgentProtocol", "CAgentSys", "Repository", "Engines",
            .product(name: "Crypto", package: "swift-crypto"),
        ]),
        .target(name: "CAgentSys"),
        // The storage format's building blocks (docs/storage-format.md): chunking, the
        // envelope, keys. Pure and Foundation-light: the agent links it too.
        .target(name: "Repository", dependencies: [
            "CZstd",
            .product(name: "Crypto", package: "swift-crypto"),
            .product(name: "_CryptoExtras", package: "swift-crypto"),
        ]),
        // The wire format shared by the agent and the coordinator.
        .target(name: "AgentProtocol"),
        // What each engine's dump and restore look like, as pure values: tool arguments,
        // credential files, the counts a dump carries, the restore filter, Redis RESP and slots.
        .target(name: "Engines"),
        .executableTarget(name: "stowage", dependencies: [
            "Coordinator", "Topology", "AgentProtocol", "CAgentSys",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),

        // Paths, fixtures, the lab and the built binaries, for both test targets.
        .target(name: "TestSupport", dependencies: ["Topology"], path: "Tests/TestSupport"),
        .testTarget(name: "TopologyTests", dependencies: ["Topology", "TestSupport"]),
        .testTarget(name: "RepositoryTests", dependencies: ["Repository", .product(name: "Crypto", package: "swift-crypto")]),
        .testTarget(name: "EnginesTests", dependencies: ["Engines"]),
        .testTarget(name: "CoordinatorTests", dependencies: ["Coordinator", "Topology", "TestSupport"]),
    ],
    swiftLanguageModes: [.v6]
)
