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
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.0.0"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.0"),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.0.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.0.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.0.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.0.0"),
    ],
    targets: [
        .systemLibrary(
            name: "CLibPQ", path: "Sources/CLibPQ", pkgConfig: "libpq",
            providers: [.apt(["libpq-dev"])]),
        .systemLibrary(
            name: "CMariaDB", path: "Sources/CMariaDB", pkgConfig: "libmariadb",
            providers: [.apt(["libmariadb-dev"])]),
        // hiredis' .pc adds -D_FILE_OFFSET_BITS=64, which SwiftPM rejects: no pkgConfig here.
        .systemLibrary(
            name: "CHiredis", path: "Sources/CHiredis",
            providers: [.apt(["libhiredis-dev"])]),
        .systemLibrary(
            name: "CLibSSH2", path: "Sources/CLibSSH2", pkgConfig: "libssh2",
            providers: [.apt(["libssh2-1-dev"])]),
        .systemLibrary(
            name: "CZstd", path: "Sources/CZstd", pkgConfig: "libzstd",
            providers: [.apt(["libzstd-dev"])]),

        // The house along the data path (docs/architecture.md). Each target depends only on
        // the ones above it, so a wrong arrow does not compile:
        //   Support → Repository (the storage format), AgentProtocol (the wire), Engines,
        //   Topology → Fleet (the inventory) → Remote (SSH, agents) → Storage → Operations
        //   → Scheduling → Service (the HTTP listener) → stowage (the CLI and all its rendering).
        // Threads for blocking C calls, deadlines, trace, the operator error and exit codes, text.
        .target(name: "Support", dependencies: [.product(name: "Logging", package: "swift-log")]),
        .target(name: "Topology", dependencies: ["CLibPQ", "CMariaDB", "CHiredis", "Engines", "Support"]),
        // The inventory: model, YAML, selection, secrets, every settings type, policies and schedules.
        .target(
            name: "Fleet",
            dependencies: [
                "Topology", "Repository", "Support",
                .product(name: "Yams", package: "Yams"),
            ]),
        // SSH (libssh2, the connection pool, known_hosts) and the agent client, installer and check.
        .target(
            name: "Remote",
            dependencies: [
                "Fleet", "Topology", "AgentProtocol", "Repository", "CLibSSH2", "Support",
                .product(name: "Crypto", package: "swift-crypto"),
            ]),
        // Storage nodes, replicated storage, locks, repositories; backups written and read;
        // verify, repair, prune.
        .target(
            name: "Storage",
            dependencies: [
                "Remote", "Fleet", "Topology", "AgentProtocol", "Repository", "Support",
                .product(name: "Crypto", package: "swift-crypto"),
            ]),
        // Backup, restore, the topology check and the add-on's lifecycle, with their pure plans.
        .target(
            name: "Operations",
            dependencies: [
                "Storage", "Remote", "Fleet", "Topology", "AgentProtocol", "Repository", "Engines", "Support",
            ]),
        // The scheduler daemon, its pure decisions, the run catalog (GRDB), notifications, status.
        .target(
            name: "Scheduling",
            dependencies: [
                "Operations", "Storage", "Remote", "Fleet", "Topology", "Repository", "Support",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "GRDB", package: "GRDB.swift"),
            ]),
        // The service face: the scheduler's HTTP listener (/metrics, /healthz, /readyz), which
        // the REST API and the dashboard will extend. The only target with NIO in it.
        .target(
            name: "Service",
            dependencies: [
                "Scheduling", "Fleet", "Support",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]),
        // Built for nodes with `--static-swift-stdlib` (scripts/setup.sh): it needs only libc.
        // FoundationEssentials, not Foundation: no ICU, a smaller static binary.
        // The agent's jobs, one file each (dump and chunk, restore and its sinks, the storage
        // jobs), as a library so they are tested without a node; NodeAgent is its thin main.
        .target(
            name: "AgentJobs",
            dependencies: [
                "CZstd", "AgentProtocol", "CAgentSys", "Repository", "Engines",
                .product(name: "Crypto", package: "swift-crypto"),
            ]),
        .executableTarget(name: "NodeAgent", dependencies: ["AgentJobs", "AgentProtocol"]),
        .target(name: "CAgentSys"),
        // The storage format's building blocks (docs/storage-format.md): chunking, the
        // envelope, keys. Pure and Foundation-light: the agent links it too.
        .target(
            name: "Repository",
            dependencies: [
                "CZstd",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "_CryptoExtras", package: "swift-crypto"),
            ]),
        // The wire format shared by the agent and the coordinator.
        .target(name: "AgentProtocol"),
        // What each engine's dump and restore look like, as pure values: tool arguments,
        // credential files, the counts a dump carries, the restore filter, Redis RESP and slots.
        .target(name: "Engines"),
        .executableTarget(
            name: "stowage",
            dependencies: [
                "Service", "Scheduling", "Operations", "Storage", "Remote", "Fleet", "Topology", "Repository", "AgentProtocol", "Support",
                "CAgentSys",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]),

        // Paths, fixtures, the lab and the built binaries, for both test targets.
        .target(name: "TestSupport", dependencies: ["Topology"], path: "Tests/TestSupport"),
        .testTarget(name: "TopologyTests", dependencies: ["Topology", "Engines", "TestSupport"]),
        .testTarget(name: "RepositoryTests", dependencies: ["Repository", .product(name: "Crypto", package: "swift-crypto")]),
        .testTarget(name: "EnginesTests", dependencies: ["Engines", "Repository"]),
        .testTarget(name: "ServiceTests", dependencies: ["Service", "Scheduling", "Support"]),
        .testTarget(name: "SupportTests", dependencies: ["Support", "TestSupport", .product(name: "Logging", package: "swift-log")]),
        // Unit tests, one target per library, none needing the lab (under a minute).
        .testTarget(name: "AgentJobsTests", dependencies: ["AgentJobs", "AgentProtocol", "Repository", "TestSupport"]),
        .testTarget(name: "AgentProtocolTests", dependencies: ["AgentProtocol"]),
        .testTarget(name: "FleetTests", dependencies: ["Fleet", "Topology", "Support", "TestSupport"]),
        .testTarget(
            name: "OperationsTests",
            dependencies: [
                "Operations", "Storage", "Remote", "Fleet", "Topology", "Repository", "Support", "TestSupport",
                .product(name: "Crypto", package: "swift-crypto"),
            ]),
        .testTarget(
            name: "SchedulingTests",
            dependencies: [
                "Scheduling", "Operations", "Fleet", "Topology", "Support", "TestSupport",
            ]),
        // The CLI's parsing and error format (runs the built binary; no lab).
        .testTarget(name: "CLITests", dependencies: ["TestSupport"]),
        // Everything on the lab's real servers (fixtures/lab/lab.sh up first); never skips.
        .testTarget(
            name: "LabTests",
            dependencies: [
                "Scheduling", "Operations", "Storage", "Remote", "Fleet", "Topology", "Repository", "AgentProtocol", "Support", "TestSupport",
                .product(name: "Crypto", package: "swift-crypto"),
            ]),
    ],
    swiftLanguageModes: [.v6]
)
