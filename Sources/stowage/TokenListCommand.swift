import ArgumentParser
import Foundation
import Scheduling
import Support

extension TokenCommand {
    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List the API tokens (ids, names, roles; never secrets).")

        @OptionGroup var global: GlobalOptions

        @Flag(help: "As JSON.")
        var json = false

        func run() async throws {
            try await reportingErrors {
                let inv = try global.loadInventory()
                let tokens = try await RunCatalog.open(path: inv.catalogPath).tokens().map(TokenView.init)
                if json {
                    printJSON(tokens)
                } else {
                    let rows = tokens.map { t in
                        [
                            t.id, t.name, t.role, t.environments.isEmpty ? "all" : t.environments.joined(separator: ","), t.created,
                            t.revoked.map { "revoked \($0)" } ?? "active",
                        ]
                    }
                    print(textTable([["ID", "NAME", "ROLE", "ENVIRONMENTS", "CREATED", "STATE"]] + rows), terminator: "")
                }
                return .ok
            }
        }
    }
}
