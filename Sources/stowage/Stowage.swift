// The `stowage` command: a thin shell over the Coordinator library. Each subcommand lives in
// its own file; the work lives in the libraries.
import ArgumentParser
import Coordinator
import Foundation

@main
struct Stowage: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "stowage",
        abstract: "Cluster-aware backup coordinator for PostgreSQL, MySQL/MariaDB and Redis fleets.",
        discussion: "Exit codes: docs/exit-codes.md. Inventory format: docs/inventory.md.",
        version: StowageVersion.string,
        subcommands: [TopologyCommand.self, BackupCommand.self, RestoreCommand.self, BackupsCommand.self, AgentCommand.self, SSHCommand.self, StorageCommand.self, ScheduleCommand.self, AddonCommand.self, SchedulerCommand.self, StatusCommand.self])
}

enum StowageVersion {
    static let string = "0.1.0"
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

    func locate() throws(StowageError) -> AgentBinary { try AgentBinary.locate(agentBinary) }
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
