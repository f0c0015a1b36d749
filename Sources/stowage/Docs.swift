// Where help texts send the reader: a path that exists on this machine. Installed
// (scripts/install.sh), the docs sit in PREFIX/share/doc/stowage beside PREFIX/bin/stowage;
// a build run from its checkout finds them in the checkout's docs/.
import ArgumentParser
import Foundation
import Support

enum Docs {
    /// The installed docs folder when there is one, else the checkout's, else nil.
    static let folder: String? = {
        let exe = URL(fileURLWithPath: currentExecutablePath() ?? CommandLine.arguments[0])
        let installed = exe.deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("share/doc/stowage").path
        // This file is Sources/stowage/Docs.swift of the checkout it was built from.
        let checkout = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("docs").path
        return [installed, checkout].first { FileManager.default.fileExists(atPath: "\($0)/exit-codes.md") }
    }()

    /// `name` (e.g. "exit-codes.md", "json/status.schema.json") as a path to open.
    static func path(_ name: String) -> String {
        folder.map { "\($0)/\(name)" } ?? "docs/\(name) of the Stowage source"
    }

    /// The help of a --json flag: what it prints and where its schema is.
    static func jsonHelp(_ schema: String, _ what: String = "Print JSON") -> ArgumentHelp {
        ArgumentHelp("\(what) (schema: \(path("json/\(schema).schema.json"))).")
    }
}
