import ArgumentParser
import Foundation
import Scheduling
import Support

extension TokenCommand {
    struct Revoke: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Revoke an API token: the next request with it is refused (401).", discussion: "Exit status: 0 revoked, 64 no such active token.")

        @OptionGroup var global: GlobalOptions

        @Argument(help: "The token's id (stowage token list).")
        var id: String

        func run() async throws {
            try await reportingErrors {
                let inv = try global.loadInventory()
                guard try await RunCatalog.open(path: inv.catalogPath).revokeToken(id: id, at: Date()) else {
                    throw StowageError(.usage, "no active token \(id)", hint: "stowage token list shows the tokens")
                }
                print("token \(id) revoked")
                return .ok
            }
        }
    }
}
