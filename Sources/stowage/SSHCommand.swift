import ArgumentParser
import Fleet
import Foundation
import Operations
import Remote
import Repository
import Scheduling
import Storage
import Support

struct SSHCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ssh",
        abstract: "Manage the SSH trust between the coordinator and the nodes.",
        subcommands: [Trust.self])

    struct Trust: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Record a node's SSH host key in the inventory's known_hosts.",
            discussion: """
                Connects to the node, shows the key it offers and records it. Check the fingerprint
                against the node's own (ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub) first.
                A key different from a recorded one is replaced only with --replace.
                """)

        @OptionGroup var global: GlobalOptions

        @Argument(help: "The node's name in the inventory.")
        var node: String

        @Flag(help: "Replace a different key already recorded for this node.")
        var replace = false

        @Flag(help: Docs.jsonHelp("ssh-trust", "Print the outcome as JSON"))
        var json = false

        struct Outcome: Encodable {
            var node: String
            var result: String
            var keyType: String
            var fingerprint: String
            var knownHosts: String
        }

        func run() async throws {
            try await reportingErrors {
                let inv = try global.loadInventory()
                let n = try inv.agentNode(named: node)
                let outcome = try await KnownHosts.trust(n.target, replace: replace)
                if json {
                    let (result, k) =
                        switch outcome {
                        case .recorded(let k): ("recorded", k)
                        case .replaced(let k): ("replaced", k)
                        case .alreadyTrusted(let k): ("alreadyTrusted", k)
                        }
                    printJSON(Outcome(node: node, result: result, keyType: k.type, fingerprint: k.fingerprint, knownHosts: n.target.knownHosts))
                    return .ok
                }
                switch outcome {
                case .recorded(let k): print("\(node): recorded \(k.type) \(k.fingerprint) in \(n.target.knownHosts)")
                case .replaced(let k): print("\(node): replaced the recorded key with \(k.type) \(k.fingerprint) in \(n.target.knownHosts)")
                case .alreadyTrusted(let k): print("\(node): \(k.type) \(k.fingerprint) is already trusted")
                }
                return .ok
            }
        }
    }
}
