// The `stowage` command: a thin shell over the Coordinator library. Each subcommand lives in
// its own file; the work lives in the libraries.
import AgentProtocol
import ArgumentParser
import CAgentSys
import Fleet
import Foundation
import Operations
import Remote
import Repository
import Scheduling
import Storage
import Support

@main
struct Stowage: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "stowage",
        abstract: "Cluster-aware backup coordinator for PostgreSQL, MySQL/MariaDB and Redis fleets.",
        discussion: "Exit codes: \(Docs.path("exit-codes.md")). Inventory format: \(Docs.path("inventory.md")). JSON output: \(Docs.path("json/")).",
        version: StowageVersion.string,
        subcommands: [
            TopologyCommand.self, BackupCommand.self, RestoreCommand.self, BackupsCommand.self, AgentCommand.self, SSHCommand.self, StorageCommand.self,
            ScheduleCommand.self, AddonCommand.self, SchedulerCommand.self, StatusCommand.self, TokenCommand.self, CoordinatorsCommand.self,
        ])

    /// Parses and runs; a command-line error becomes the same one-line error and hint as
    /// every other error (docs/exit-codes.md), exit 64, instead of the parser's usage block.
    /// Help and version requests print as the parser prints them.
    static func main() async {
        // At most two malloc arenas: every blocking C call runs on a thread of its own, and
        // glibc gives each such thread an arena that keeps what it freed, so a restore's
        // peak RSS grew with the threads it had used, not with the data it held (274 MiB
        // for a Redis restore in the bench; 196 MiB with two arenas).
        _ = stowage_limit_malloc_arenas(2)
        let arguments = Array(CommandLine.arguments.dropFirst())
        let command: ParsableCommand
        do {
            command = try parseAsRoot(arguments)
        } catch {
            let code = exitCode(for: error)
            guard code != .success else { exit(withError: error) }
            printError(usageError(message(for: error), arguments: arguments))
            exit(withError: ExitCode(ExitStatus.usage.rawValue))
        }
        do {
            if var c = command as? AsyncParsableCommand { try await c.run() } else { var c = command; try c.run() }
        } catch {
            exit(withError: error)
        }
    }

    /// The parser's message as a `StowageError`, with a hint naming the subcommand's help.
    static func usageError(_ message: String, arguments: [String]) -> StowageError {
        var path: [String] = []
        var commands: [ParsableCommand.Type] = configuration.subcommands
        for a in arguments {
            guard let sub = commands.first(where: { $0._commandName == a }) else { break }
            path.append(a)
            commands = sub.configuration.subcommands
        }
        let line = message.split(separator: "\n").first.map(String.init) ?? message
        let text = line.hasPrefix("Error: ") ? String(line.dropFirst(7)) : line
        return StowageError(.usage, text, hint: "stowage \((path + ["--help"]).joined(separator: " ")) lists the arguments and options")
    }
}

enum StowageVersion {
    static let number = AgentWire.version
    /// The commit the build was made from (scripts/build-info.sh), "unknown" without one.
    static let commit = String(cString: stowage_build_commit())
    static let string = "\(number) (commit \(commit))"
}

/// Options every subcommand shares.
struct GlobalOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("The inventory file (default: $STOWAGE_CONFIG, else ./stowage.yaml).", valueName: "file"))
    var config: String?

    func loadInventory() throws(StowageError) -> Inventory {
        try Inventory.load(path: Inventory.resolvePath(option: config))
    }
}

/// `--agent-binary`, for every command that runs jobs on nodes.
struct AgentBinaryOption: ParsableArguments {
    @Option(help: ArgumentHelp("The stowage-agent binary to install or expect (default: $STOWAGE_AGENT_BINARY, else beside stowage).", valueName: "path"))
    var agentBinary: String?

    /// The binary, its hash remembered in the inventory's state folder. On a thread of its
    /// own: without a remembered hash, reading and hashing tens of MB would hold one of the
    /// cooperative pool's two threads for ~0.1 s.
    func locate(_ inv: Inventory) async throws(StowageError) -> AgentBinary {
        let (path, cache) = (agentBinary, inv.stateDirectory.isEmpty ? nil : inv.stateDirectory)
        do {
            return try await DedicatedThread.run("agent-binary") { _ in try AgentBinary.locate(path, hashCache: cache) }
        } catch let e as StowageError {
            throw e
        } catch {
            throw StowageError(.internalError, "locating the stowage-agent binary: \(error)")
        }
    }
}

/// `--storage`, for the commands that read or write backups.
struct StorageOption: ParsableArguments {
    @Option(help: "The storage (default: the inventory's only storage).")
    var storage: String?

    func spec(in inv: Inventory) throws(StowageError) -> StorageSpec { try inv.requireStorage(storage) }
}

/// Runs a command body, turning a `StowageError` into its one-line message, hint and exit code.
func reportingErrors(_ body: () async throws -> ExitStatus) async throws {
    let status: ExitStatus
    do {
        status = try await body()
    } catch let e as StowageError {
        printError(e)
        throw ExitCode(e.status.rawValue)
    }
    if status != .ok { throw ExitCode(status.rawValue) }
}

func printError(_ e: StowageError) {
    var text = "stowage: error: \(e.message)\n"
    if let hint = e.hint { text += "hint: \(hint)\n" }
    FileHandle.standardError.write(Data(text.utf8))
}

/// A whole number option's value, or an error saying what is wrong with the one given (the
/// parser adds the option and the value).
func wholeNumber(_ s: String) throws -> Int {
    guard let n = Int(s) else { throw ValidationError("not a whole number") }
    return n
}
