// Engine answers turned into one engine-neutral set of facts per node, so that a single
// analysis serves PostgreSQL, MySQL/MariaDB and Redis. Each engine's reading of its raw
// answers is a pure function of a `RawProbe`.
import Engines
import Support

/// A replica as its upstream sees it (pg_stat_replication, SHOW SLAVE HOSTS, INFO slaveN).
struct DownstreamReplica: Equatable, Sendable {
    /// PostgreSQL's application_name: the lab and most tools set it to the replica's name.
    var name: String?
    var endpoint: Endpoint?
    var state: String
    var lagSeconds: Double?
    var lagBytes: Int64?
}

struct GaleraFacts: Equatable, Sendable {
    var clusterSize: Int
    var localState: String
    var clusterStateUUID: String
    var clusterStatus: String
}

struct RedisClusterFacts: Equatable, Sendable {
    var state: String
    var slotsAssigned: Int
    var nodes: [RedisClusterNode]
    var myself: RedisClusterNode? { nodes.first { $0.isMyself } }
}

struct NodeFacts: Equatable, Sendable {
    var version: String?
    /// Takes writes on its own: PostgreSQL not in recovery, MySQL with no replication
    /// channel, Redis with role master.
    var writable: Bool
    /// What it replicates from, when it is a replica.
    var upstream: Endpoint?
    var linkState: String?
    /// Why the link is not healthy, nil when it is (or when there is no link).
    var linkProblem: String?
    var lagSeconds: Double?
    var downstream: [DownstreamReplica] = []
    /// Identifies one physical cluster: PostgreSQL's system identifier. Two nodes with
    /// different identities never belong to one replication cluster.
    var identity: String?
    /// Identifiers of the replication histories a node belongs to (Redis replication IDs,
    /// current and previous): a replica detached with REPLICAOF NO ONE keeps its old
    /// master's ID as `master_replid2`, so it still shares a history with it.
    var lineage: Set<String> = []
    /// Redis' `master_replid2`: the history a node followed before it was detached or promoted.
    var previousHistory: String?
    /// Redis' `master_replid`.
    var currentHistory: String?
    var timeline: Int?
    var details: [String] = []
    var galera: GaleraFacts?
    var redisCluster: RedisClusterFacts?
}

enum FactsError: Error, Equatable {
    case missing(String)
}

/// Reads a node's raw answers for the given engine.
func interpret(_ raw: RawProbe, engine: Engine) throws -> NodeFacts {
    switch engine {
    case .postgresql: try postgresFacts(raw)
    case .mysql: try mysqlFacts(raw)
    case .redis: try redisFacts(raw)
    }
}

// MARK: - PostgreSQL

/// The probe's statements, by the names the raw answers are filed under.
enum PostgresQueries {
    static let server = """
        SELECT current_setting('server_version') AS server_version,
               pg_is_in_recovery()::text AS in_recovery,
               (SELECT system_identifier::text FROM pg_control_system()) AS system_identifier,
               (CASE WHEN pg_is_in_recovery()
                     THEN COALESCE((SELECT received_tli FROM pg_stat_wal_receiver),
                                   (SELECT timeline_id FROM pg_control_checkpoint()))
                     ELSE ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int
                END)::text AS timeline,
               (CASE WHEN pg_is_in_recovery() THEN
                     CASE WHEN pg_last_wal_receive_lsn() IS NOT DISTINCT FROM pg_last_wal_replay_lsn() THEN 0
                          ELSE COALESCE(extract(epoch FROM now() - pg_last_xact_replay_timestamp()), 0) END
                END)::text AS replay_delay
        """
    static let replication = """
        SELECT application_name, client_addr::text AS client_addr, state, sync_state,
               sent_lsn::text AS sent_lsn, replay_lsn::text AS replay_lsn,
               pg_wal_lsn_diff(CASE WHEN pg_is_in_recovery() THEN pg_last_wal_receive_lsn()
                                    ELSE pg_current_wal_lsn() END, replay_lsn)::bigint::text AS lag_bytes,
               extract(epoch FROM replay_lag)::text AS replay_lag
        FROM pg_stat_replication
        """
    // Never read primary_conninfo: it may hold the replication password.
    static let walReceiver = """
        SELECT status, sender_host, sender_port::text AS sender_port, slot_name,
               received_tli::text AS received_tli
        FROM pg_stat_wal_receiver
        """
    static let all: [(String, String)] = [("server", server), ("replication", replication), ("wal_receiver", walReceiver)]
}

func postgresFacts(_ raw: RawProbe) throws -> NodeFacts {
    guard let server = raw.results["server"]?.first else { throw FactsError.missing("server") }
    let inRecovery = server["in_recovery"] == "true"
    var facts = NodeFacts(
        version: server["server_version"].map { v in
            // "15.20 (Debian 15.20-0+deb12u1)": the packager's note adds nothing here.
            "PostgreSQL \(v.split(separator: " ").first.map(String.init) ?? v)"
        }, writable: !inRecovery)
    facts.identity = server["system_identifier"]
    facts.timeline = server["timeline"].flatMap { Int($0) }
    if let tl = facts.timeline { facts.details.append("timeline \(tl)") }

    for row in raw.results["replication"] ?? [] {
        facts.downstream.append(
            DownstreamReplica(
                name: row["application_name"].flatMap { $0.isEmpty ? nil : $0 },
                endpoint: row["client_addr"].map { Endpoint(host: stripMask($0), port: 0) },
                state: row["state"] ?? "unknown",
                lagSeconds: row["replay_lag"].flatMap(Double.init) ?? 0,
                lagBytes: row["lag_bytes"].flatMap { Int64($0) }))
    }

    if inRecovery {
        facts.details.append("in recovery")
        facts.lagSeconds = server["replay_delay"].flatMap(Double.init)
        if let rx = raw.results["wal_receiver"]?.first {
            let status = rx["status"] ?? "unknown"
            facts.linkState = status
            if let host = rx["sender_host"], let port = rx["sender_port"].flatMap({ Int($0) }) {
                facts.upstream = Endpoint(host: host, port: port)
            }
            if status != "streaming" { facts.linkProblem = "WAL receiver is \(status), not streaming" }
        } else {
            facts.linkState = "no WAL receiver"
            facts.linkProblem = "in recovery but no WAL receiver is running (upstream unreachable or not configured)"
        }
    }
    return facts
}

/// `client_addr` is inet text and may carry a mask ("10.0.0.1/32").
private func stripMask(_ s: String) -> String { s.split(separator: "/").first.map(String.init) ?? s }

// MARK: - MySQL / MariaDB

enum MySQLQueries {
    static let variables = """
        SHOW GLOBAL VARIABLES WHERE Variable_name IN ('version', 'version_comment', 'server_id', 'read_only',
            'super_read_only', 'server_uuid', 'gtid_mode', 'gtid_executed', 'gtid_current_pos', 'gtid_binlog_pos',
            'gtid_slave_pos', 'log_bin', 'wsrep_on')
        """
    /// MariaDB ≥ 10.5 and MySQL ≥ 8.0.22 accept the first; older servers only the second.
    static let replicaStatus = ["SHOW REPLICA STATUS", "SHOW SLAVE STATUS"]
    static let replicaHosts = ["SHOW REPLICAS", "SHOW SLAVE HOSTS"]
    static let wsrepStatus = "SHOW GLOBAL STATUS LIKE 'wsrep%'"
}

/// A replication channel with MySQL 8 (`Source_*`, `Replica_*`) and MariaDB / MySQL 5.7
/// (`Master_*`, `Slave_*`) column names folded into one.
struct MySQLReplicaChannel: Equatable, Sendable {
    var sourceHost: String
    var sourcePort: Int
    var ioRunning: String
    var sqlRunning: String
    var secondsBehind: Double?
    var lastIOError: String
    var lastSQLError: String
    var channelName: String

    init(row: RawProbe.Row) {
        func col(_ names: String...) -> String? { names.lazy.compactMap { row[$0] }.first }
        sourceHost = col("Source_Host", "Master_Host") ?? ""
        sourcePort = col("Source_Port", "Master_Port").flatMap { Int($0) } ?? 3306
        ioRunning = col("Replica_IO_Running", "Slave_IO_Running") ?? "No"
        sqlRunning = col("Replica_SQL_Running", "Slave_SQL_Running") ?? "No"
        secondsBehind = col("Seconds_Behind_Source", "Seconds_Behind_Master").flatMap(Double.init)
        lastIOError = col("Last_IO_Error") ?? ""
        lastSQLError = col("Last_SQL_Error") ?? ""
        channelName = col("Channel_Name", "Connection_name") ?? ""
    }
}

func mysqlFacts(_ raw: RawProbe) throws -> NodeFacts {
    guard let varRows = raw.results["variables"] else { throw FactsError.missing("variables") }
    var vars: [String: String] = [:]
    for row in varRows {
        if let k = row["Variable_name"] { vars[k.lowercased()] = row["Value"] ?? "" }
    }
    let channels = (raw.results["replica_status"] ?? []).map(MySQLReplicaChannel.init(row:))
    let flavor = (vars["version"] ?? "").localizedMariaDB ? "MariaDB" : "MySQL"
    let version = vars["version"].map { v in "\(flavor) \(v.split(separator: "-").first.map(String.init) ?? v)" }
    var facts = NodeFacts(version: version, writable: channels.isEmpty)

    if vars["read_only"] == "ON" || vars["read_only"] == "1" { facts.details.append("read-only") }
    if let id = vars["server_id"] { facts.details.append("server_id \(id)") }
    if let gtid = vars["gtid_current_pos"] ?? vars["gtid_executed"], !gtid.isEmpty {
        facts.details.append("gtid \(gtid.replacingNewlines())")
    }

    // Multi-source replicas have several channels; the first one that is not healthy, or
    // else the first, describes the node's upstream.
    if let ch = channels.first(where: { $0.ioRunning != "Yes" || $0.sqlRunning != "Yes" }) ?? channels.first {
        facts.upstream = Endpoint(host: ch.sourceHost, port: ch.sourcePort)
        facts.lagSeconds = ch.secondsBehind
        if ch.ioRunning == "Yes" && ch.sqlRunning == "Yes" {
            facts.linkState = "replicating"
        } else {
            facts.linkState = ch.ioRunning == "Connecting" ? "connecting" : "stopped"
            var why =
                "IO thread \(ch.ioRunning == "Yes" ? "running" : ch.ioRunning.lowercased() == "no" ? "not running" : ch.ioRunning.lowercased()), SQL thread \(ch.sqlRunning == "Yes" ? "running" : "not running")"
            let err = [ch.lastIOError, ch.lastSQLError].filter { !$0.isEmpty }.joined(separator: "; ")
            if !err.isEmpty { why += ": \(err)" }
            facts.linkProblem = why
        }
    }

    for row in raw.results["replica_hosts"] ?? [] {
        guard let host = row["Host"], !host.isEmpty else { continue }
        let port = row["Port"].flatMap { Int($0) } ?? 3306
        facts.downstream.append(
            DownstreamReplica(
                name: nil, endpoint: Endpoint(host: host, port: port),
                state: "connected", lagSeconds: nil, lagBytes: nil))
    }

    // MariaDB reports wsrep_* status variables even without Galera; only wsrep_on=ON with a
    // cluster behind it means the node is a Galera member.
    if vars["wsrep_on"] == "ON" {
        var st: [String: String] = [:]
        for row in raw.results["wsrep"] ?? [] {
            if let k = row["Variable_name"] { st[k.lowercased()] = row["Value"] ?? "" }
        }
        if let size = st["wsrep_cluster_size"].flatMap({ Int($0) }), size > 0 {
            facts.galera = GaleraFacts(
                clusterSize: size,
                localState: st["wsrep_local_state_comment"] ?? "unknown",
                clusterStateUUID: st["wsrep_cluster_state_uuid"] ?? "",
                clusterStatus: st["wsrep_cluster_status"] ?? "unknown")
            facts.identity = st["wsrep_cluster_state_uuid"]
        }
    }
    return facts
}

private extension String {
    var localizedMariaDB: Bool { lowercased().contains("mariadb") }
    func replacingNewlines() -> String { split(whereSeparator: \.isNewline).joined(separator: " ") }
}

// MARK: - Redis

enum RedisCommands {
    static let role = ["ROLE"]
    static let infoServer = ["INFO", "server"]
    static let infoReplication = ["INFO", "replication"]
    static let infoCluster = ["INFO", "cluster"]
    static let clusterInfo = ["CLUSTER", "INFO"]
    static let clusterNodes = ["CLUSTER", "NODES"]
}

private let noReplID = String(repeating: "0", count: 40)

func redisFacts(_ raw: RawProbe) throws -> NodeFacts {
    guard let replText = raw.replies["info replication"] else { throw FactsError.missing("info replication") }
    let repl = RESP.infoFields(replText)
    let server = RESP.infoFields(raw.replies["info server"] ?? "")
    // ROLE is authoritative; INFO's role line is the fallback for recorded answers without it.
    let role = raw.replies["role"] ?? repl["role"] ?? "unknown"
    var facts = NodeFacts(version: server["redis_version"].map { "Redis \($0)" }, writable: role == "master")
    for key in ["master_replid", "master_replid2"] {
        if let id = repl[key], id != noReplID, !id.isEmpty { facts.lineage.insert(id) }
    }
    facts.currentHistory = repl["master_replid"].flatMap { $0 == noReplID ? nil : $0 }
    facts.previousHistory = repl["master_replid2"].flatMap { $0 == noReplID ? nil : $0 }

    let masterOffset = repl["master_repl_offset"].flatMap { Int64($0) }
    if role == "slave" {
        if let host = repl["master_host"], let port = repl["master_port"].flatMap({ Int($0) }) {
            facts.upstream = Endpoint(host: host, port: port)
        }
        let link = repl["master_link_status"] ?? "unknown"
        facts.linkState = link == "up" ? "link up" : "link \(link)"
        if repl["master_sync_in_progress"] == "1" {
            facts.linkState = "syncing"
            facts.linkProblem = "initial synchronisation in progress"
        } else if link != "up" {
            facts.linkProblem =
                "master_link_status:\(link)"
                + (repl["master_link_down_since_seconds"].map { " for \($0) s" } ?? "")
        }
    } else if role != "master" {
        facts.linkProblem = "unexpected role \(role)"
    }

    for (key, value) in repl where key.hasPrefix("slave") && Int(key.dropFirst(5)) != nil {
        let kv = parseRedisKeyValueList(value)
        guard let ip = kv["ip"], let port = kv["port"].flatMap({ Int($0) }) else { continue }
        let offset = kv["offset"].flatMap { Int64($0) }
        facts.downstream.append(
            DownstreamReplica(
                name: nil, endpoint: Endpoint(host: ip, port: port), state: kv["state"] ?? "unknown",
                lagSeconds: kv["lag"].flatMap(Double.init),
                lagBytes: zip2(masterOffset, offset).map { max(0, $0 - $1) }))
    }
    facts.downstream.sort { ($0.endpoint?.description ?? "") < ($1.endpoint?.description ?? "") }

    if RESP.infoFields(raw.replies["info cluster"] ?? "")["cluster_enabled"] == "1" {
        let info = RESP.infoFields(raw.replies["cluster info"] ?? "")
        let nodes = try parseClusterNodes(raw.replies["cluster nodes"] ?? "")
        facts.redisCluster = RedisClusterFacts(
            state: info["cluster_state"] ?? "unknown",
            slotsAssigned: info["cluster_slots_assigned"].flatMap { Int($0) } ?? 0,
            nodes: nodes)
        if let me = facts.redisCluster?.myself {
            facts.writable = me.isMaster
            if !me.slotRanges.isEmpty { facts.details.append("slots \(me.slotRanges.joined(separator: ","))") }
        }
    }
    return facts
}

private func zip2<A, B>(_ a: A?, _ b: B?) -> (A, B)? {
    guard let a, let b else { return nil }
    return (a, b)
}
