// MySQL, MariaDB, Percona: mariadb-dump (or mysqldump) out, with rows counted as it
// streams; mariadb (or mysql) in, through the filter that applies routine grants after the
// routines they name.
import AgentProtocol
import Engines

#if canImport(Glibc)
import Glibc
#endif

struct MySQLDriver: EngineDriver {
    func dumpSource(_ db: DatabaseAccess, password: String?) throws -> StreamSource {
        guard let tool = findTool(["mariadb-dump", "mysqldump"]) else {
            throw JobFailure(exit: .jobFailed, code: "tool-missing", message: "neither mariadb-dump nor mysqldump is installed on this node")
        }
        let d = try PrivateDir()
        let options = try d.write("client.cnf", try credentials { try CredentialFiles.mysqlOptions(user: db.user, password: password ?? "") })
        let source = try CommandSource(
            ToolCommands.mysqlDump(
                program: tool, optionsFile: options, host: db.host, port: db.port,
                fromReplica: db.fromReplica ?? false),
            dir: d, counting: "mysql")
        if db.fromReplica ?? false, let client = findTool(["mariadb", "mysql"]) {
            // --dump-slave stops the replica's SQL thread for the dump and starts it at the
            // end; a dump that does not reach its end leaves it stopped. The plan only dumps
            // a replica that was replicating, so start it again.
            source.afterFailure = {
                guard
                    let c = try? Child(
                        ToolCommands.mysqlApply(program: client, optionsFile: options, host: db.host, port: db.port)
                            + ["--execute=START SLAVE SQL_THREAD"], output: false)
                else { return }
                let deadline = monotonicNow() + 10
                while !c.tryReap() && monotonicNow() < deadline { usleep(20_000) }
                c.terminate(grace: 0.5)
            }
        }
        return source
    }

    func restoreSink(_ db: DatabaseAccess, password: String?, dir: PrivateDir) throws -> RestoreSink {
        guard let tool = findTool(["mariadb", "mysql"]) else {
            throw JobFailure(exit: .jobFailed, code: "tool-missing", message: "neither mariadb nor mysql is installed on this node")
        }
        let options = try dir.write("client.cnf", try credentials { try CredentialFiles.mysqlOptions(user: db.user, password: password ?? "") })
        return try ToolSink(
            ToolCommands.mysqlApply(program: tool, optionsFile: options, host: db.host, port: db.port), dir: dir,
            filter: MySQLRestoreFilter())
    }
}
