// How an agent reaches the database on its node for a dump or a restore. The password is
// not here: it travels in the job's `secrets` ("dbPassword"), and the agent hands it to the
// tools only through files in a private folder (never argv, never the environment).

/// The database side of a `chunk` (dump) or `restore` job.
public struct DatabaseAccess: Codable, Sendable, Equatable {
    /// "postgresql", "mysql" or "redis" (the inventory's engine names).
    public var engine: String
    public var host: String
    public var port: Int
    public var user: String?
    /// The dump runs on a replica: MySQL records the primary's position instead of its own.
    public var fromReplica: Bool?
    /// Redis Cluster: a restore routes every key by its slot to the master holding it now.
    public var cluster: Bool?
    /// Restore: remove everything first (Redis FLUSHALL on every master). The SQL engines'
    /// dumps drop and recreate what they contain themselves.
    public var flush: Bool?
    /// PostgreSQL restore: roles the script must not drop and create (the connecting role,
    /// the bootstrap superuser); default: the connecting role and "postgres".
    public var keepRoles: [String]?

    public init(engine: String, host: String, port: Int, user: String? = nil, fromReplica: Bool? = nil,
                cluster: Bool? = nil, flush: Bool? = nil, keepRoles: [String]? = nil) {
        self.engine = engine
        self.host = host
        self.port = port
        self.user = user
        self.fromReplica = fromReplica
        self.cluster = cluster
        self.flush = flush
        self.keepRoles = keepRoles
    }
}
