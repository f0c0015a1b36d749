// PostgreSQL: pg_dumpall out (rows counted as it streams), psql in, through the filter that
// keeps the restoring role and the bootstrap role from being dropped under the session.
import AgentProtocol
import Engines

#if canImport(Glibc)
import Glibc
#endif

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
        let command = ToolCommands.psqlApply(host: db.host, port: db.port, user: db.user, passfile: passfile)
        let filter = PostgresRestoreFilter(keepRoles: db.keepRoles ?? [db.user ?? "postgres", "postgres"])
        let sessions = db.jobs ?? Self.defaultSessions
        guard sessions > 1, TableLoaders.canSpool else { return try ToolSink(command, dir: dir, filter: filter) }
        return ParallelToolSink(command, dir: dir, filter: filter, sessions: sessions)
    }

    /// Sessions loading tables at once unless the job says: one per two online cores, at
    /// most four. Each session keeps a psql and a server process busy, and the agent needs
    /// its share; on two cores bench/pg-parallel.sh measured one session faster for a
    /// database whose largest table is half its data, two faster for equal tables.
    static var defaultSessions: Int { min(4, max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))) / 2)) }
}
