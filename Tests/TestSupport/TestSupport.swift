// Shared by the test targets: where the repository, fixtures, lab and binaries are, and how
// to run a command and read what it printed.
import Foundation
import Topology

public enum Repo {
    /// The package root, found from this file's path (Tests/TestSupport/TestSupport.swift).
    public static let root: URL = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    public static func path(_ relative: String) -> String { root.appendingPathComponent(relative).path }

    /// The built `stowage` executable, beside the test bundle in .build/<config>/.
    public static var stowage: String {
        if let p = ProcessInfo.processInfo.environment["STOWAGE_BIN"] { return p }
        let candidates = [
            URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("stowage").path,
            path(".build/debug/stowage"),
        ]
        return candidates.first { FileManager.default.isExecutableFile(atPath: $0) } ?? candidates[1]
    }
}

public enum Fixtures {
    public static func observation(_ relative: String) throws -> LayerObservation {
        let data = try Data(contentsOf: URL(fileURLWithPath: Repo.path("fixtures/probes/\(relative)")))
        return try JSONDecoder().decode(LayerObservation.self, from: data)
    }
}

public struct CommandResult: Sendable {
    public var status: Int32
    public var stdout: String
    public var stderr: String
    public var seconds: Double
}

/// Runs a program to completion. Environment: this process's, changed by `env` (a nil value removes).
@discardableResult
public func runCommand(_ program: String, _ args: [String], env: [String: String?] = [:], cwd: String? = nil) throws -> CommandResult {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: program)
    p.arguments = args
    var e = ProcessInfo.processInfo.environment
    for (k, v) in env { e[k] = v }
    p.environment = e
    if let cwd { p.currentDirectoryURL = URL(fileURLWithPath: cwd) }
    let out = Pipe(), err = Pipe()
    p.standardOutput = out
    p.standardError = err
    p.standardInput = FileHandle.nullDevice
    let start = Date()
    try p.run()
    // Read both pipes while the process runs, so that a full pipe never blocks it.
    nonisolated(unsafe) var errData = Data()
    let group = DispatchGroup()
    group.enter()
    DispatchQueue.global().async { errData = err.fileHandleForReading.readDataToEndOfFile(); group.leave() }
    let outData = out.fileHandleForReading.readDataToEndOfFile()
    group.wait()
    p.waitUntilExit()
    return CommandResult(status: p.terminationStatus, stdout: String(decoding: outData, as: UTF8.self),
                         stderr: String(decoding: errData, as: UTF8.self), seconds: Date().timeIntervalSince(start))
}

/// The lab started by fixtures/lab/lab.sh.
public enum Lab {
    public static let dir = ProcessInfo.processInfo.environment["STOWAGE_LAB_DIR"] ?? "/var/lib/stowage-lab"
    public static var inventory: String { "\(dir)/stowage.yaml" }
    public static func secret(_ name: String) throws -> String {
        try String(contentsOfFile: "\(dir)/secrets/\(name)", encoding: .utf8)
    }

    public struct NotRunning: Error, CustomStringConvertible {
        public var description: String
    }

    /// Fails (never skips) when the lab is down: integration tests must run wherever the suite runs.
    public static func require() throws {
        let r = try runCommand("/bin/bash", [Repo.path("fixtures/lab/lab.sh"), "status"], env: ["STOWAGE_LAB_DIR": dir])
        guard r.status == 0, FileManager.default.fileExists(atPath: inventory) else {
            throw NotRunning(description: "the lab is not running (\(dir)); start it with: bash fixtures/lab/lab.sh up\n\(r.stdout)")
        }
    }

    public static func fault(_ name: String, _ arg: String? = nil) throws { try lab(["fault", name] + (arg.map { [$0] } ?? [])) }
    public static func heal(_ name: String, _ arg: String? = nil) throws { try lab(["heal", name] + (arg.map { [$0] } ?? [])) }

    static func lab(_ args: [String]) throws {
        let r = try runCommand("/bin/bash", [Repo.path("fixtures/lab/lab.sh")] + args, env: ["STOWAGE_LAB_DIR": dir])
        guard r.status == 0 else { throw NotRunning(description: "lab.sh \(args.joined(separator: " ")) failed: \(r.stderr)") }
    }

    /// Runs `body` with a fault injected and always heals it afterwards.
    public static func with<T>(_ fault: String, _ arg: String? = nil, _ body: () async throws -> T) async throws -> T {
        try Lab.fault(fault, arg)
        do {
            let v = try await body()
            try Lab.heal(fault, arg)
            return v
        } catch {
            try? Lab.heal(fault, arg)
            throw error
        }
    }
}
