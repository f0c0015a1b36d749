import ArgumentParser
import Foundation
import Scheduling
import Support

extension TokenCommand {
    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Make an API token and print its secret, once (the catalog keeps only its SHA-256).",
            discussion: """
                Roles: viewer (reads), operator (also backs up and restores, in the --environment it is scoped to; all when none is given),
                admin (everything: configure, install, uninstall, storage maintenance, tokens). Exit status: 0 made, 64 bad arguments.
                """)

        @OptionGroup var global: GlobalOptions

        @Option(help: "A name for the token (who or what uses it).")
        var name: String

        @Option(help: ArgumentHelp("viewer, operator or admin.", valueName: "role"))
        var role: String

        @Option(help: ArgumentHelp("An environment an operator may act on (repeatable; default: all).", valueName: "env"))
        var environment: [String] = []

        @Flag(
            help: ArgumentHelp(
                "Also let the dashboard sign in with the token's name and a password, read from standard input (one line, 12 characters or more; never in argv)."
            ))
        var passwordStdin = false

        @Flag(help: "Print the token and its secret as JSON.")
        var json = false

        func run() async throws {
            try await reportingErrors {
                let inv = try global.loadInventory()
                guard let r = APIRole(rawValue: role) else {
                    throw StowageError(.usage, "unknown role '\(role)'", hint: "viewer, operator or admin")
                }
                for e in environment where inv.environments.first(where: { $0.name == e }) == nil {
                    throw StowageError(.usage, "no environment '\(e)' in the inventory", hint: "stowage status lists the environments")
                }
                guard !name.isEmpty, name.count <= 100 else { throw StowageError(.usage, "a token's name has 1 to 100 characters") }
                let catalog = try await RunCatalog.open(path: inv.catalogPath)
                var record: String?
                if passwordStdin {
                    let password = (readLine(strippingNewline: true) ?? "")
                    guard password.count >= PasswordHash.minimumLength else {
                        throw StowageError(
                            .usage, "the password read from standard input has \(password.count) characters, fewer than \(PasswordHash.minimumLength)",
                            hint: "pipe a longer one, e.g. from a password manager: ... | stowage token create --password-stdin ...")
                    }
                    guard try await catalog.passwordLogins(name: name).isEmpty else {
                        throw StowageError(.usage, "a token named '\(name)' already signs in with a password", hint: "give this one another --name")
                    }
                    record = await DedicatedThread.run("scrypt") { PasswordHash.make(password) }
                }
                let (token, secret) = APIToken.generate(name: name, role: r, environments: environment)
                try await catalog.addToken(token)
                if let record { try await catalog.setPassword(id: token.id, record: record) }
                if json {
                    struct Made: Encodable {
                        var token: TokenView
                        var secret: String
                    }
                    printJSON(Made(token: TokenView(token), secret: secret))
                } else {
                    print("token \(token.id) (\(token.name), \(token.role.rawValue)\(environment.isEmpty ? "" : " of \(environment.joined(separator: ", "))"))")
                    print("secret: \(secret)")
                    print("It is shown this once: keep it where the API's client reads it (Authorization: Bearer <secret>).")
                    if record != nil { print("The dashboard also signs in as '\(name)' with the password given.") }
                }
                return .ok
            }
        }
    }
}
