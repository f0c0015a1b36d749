// How an agent reaches the database on its node for a dump or a restore. The password is
// not here: it travels in the job's `secrets` (`JobSecrets.dbPassword`), and the agent hands
// it to the tools only through files in a private folder (never argv, never the environment).

/// The engines an agent dumps and restores (the inventory's engine names on the wire).
package enum DatabaseEngine: String, Codable, Sendable, CaseIterable {
    case postgresql, mysql, redis
}

/// The database side of a `chunk` (dump) or `restore` job.
package struct DatabaseAccess: Codable, Sendable, Equatable {
    package var engine: DatabaseEngine
    package var host: String
    package var port: Int
    package var user: String?
    /// The dump runs on a replica: MySQL records the primary's position instead of its own.
    package var fromReplica: Bool?
    /// Redis Cluster: a restore routes every key by its slot to the master holding it now.
    package var cluster: Bool?
    /// Restore: remove everything first (Redis FLUSHALL on every master). The SQL engines'
    /// dumps drop and recreate what they contain themselves.
    package var flush: Bool?
    /// PostgreSQL restore: roles the script must not drop and create (the connecting role,
    /// the bootstrap superuser); default: the connecting role and "postgres".
    package var keepRoles: [String]?
    /// PostgreSQL restore: sessions loading tables at once (1: one psql applies the script in
    /// order); default: one per two of the node's online cores, at most 4.
    package var jobs: Int?

    package init(
        engine: DatabaseEngine, host: String, port: Int, user: String? = nil, fromReplica: Bool? = nil,
        cluster: Bool? = nil, flush: Bool? = nil, keepRoles: [String]? = nil, jobs: Int? = nil
    ) {
        self.engine = engine
        self.host = host
        self.port = port
        self.user = user
        self.fromReplica = fromReplica
        self.cluster = cluster
        self.flush = flush
        self.keepRoles = keepRoles
        self.jobs = jobs
    }
}
