// PostgreSQL: pg_dumpall out (rows counted as it streams), psql in, through the filter that
// keeps the restoring role and the bootstrap role from being dropped under the session.
import AgentProtocol
import Engines

struct PostgreSQLDriver: EngineDriver {
    func dumpSource(_ db: DatabaseAccess, password: String?) throws -> StreamSource {
        let d = try PrivateDir()
        let passfile = try password.map { p in try d.write("pgpass", try credentials { try CredentialFiles.pgpass(password: p) }) }
        return try CommandSource(
            ToolCommands.pgDumpall(host: db.host, port: db.port, user: db.user, passfile: passfile),
            dir: d, counting: "postgresql")
    }

    func restoreSink(_ db: DatabaseAccess, password: String?, dir: PrivateDir) throws -> RestoreSink {
        let passfile = try password.map { p in try dir.write("pgpass", try credentials { try CredentialFiles.pgpass(password: p) }) }
        return try ToolSink(
            ToolCommands.psqlApply(host: db.host, port: db.port, user: db.user, passfile: passfile), dir: dir,
            filter: PostgresRestoreFilter(keepRoles: db.keepRoles ?? [db.user ?? "postgres", "postgres"]))
    }
}
