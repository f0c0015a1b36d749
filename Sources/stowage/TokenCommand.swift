import ArgumentParser
import Foundation
import Scheduling
import Support

struct TokenCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "token",
        abstract: "Manage the REST API's tokens: a role each, the secret shown once, only its hash kept.",
        discussion: "The API and its roles: \(Docs.path("api.md")).",
        subcommands: [Create.self, List.self, Revoke.self])
}

/// A token as `token list` and `token create --json` show it: never its secret or hash.
struct TokenView: Encodable {
    var id: String
    var name: String
    var role: String
    var environments: [String]
    var created: String
    var revoked: String?

    init(_ t: APIToken) {
        id = t.id
        name = t.name
        role = t.role.rawValue
        environments = t.environments
        created = ISO8601DateFormatter().string(from: t.created)
        revoked = t.revoked.map { ISO8601DateFormatter().string(from: $0) }
    }
}
