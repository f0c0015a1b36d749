// What a database holds, counted the way a dump counts it (Engines' dump counters): rows per
// database for the SQL engines (the `mysql` schema left out), keys per database for Redis.
// A restore compares these, taken on the restored server, with the backup's manifest.
import Support

package enum DataCounts {
    /// Counts on one node. Blocking: runs on a dedicated thread.
    package static func count(_ t: ProbeTarget) async -> Result<[String: Int64], ProbeFailure> {
        await DedicatedThread.run("count \(t.name)") {
            Result { () throws(ProbeFailure) -> [String: Int64] in try countBlocking(t) }
        }
    }

    /// PostgreSQL: the bootstrap superuser (oid 10), which no script can drop.
    package static func postgresBootstrapRole(_ t: ProbeTarget) async -> String? {
        await DedicatedThread.run("roles \(t.name)") {
            (try? PostgresConnection(t).query("SELECT rolname FROM pg_roles WHERE oid = 10"))?.first?["rolname"]
        }
    }

    static func countBlocking(_ t: ProbeTarget) throws(ProbeFailure) -> [String: Int64] {
        var out: [String: Int64] = [:]
        switch t.engine {
        case .postgresql:
            // Every database a connection can reach (what pg_dumpall dumps), each table's
            // count(*) summed: COPY writes one line per row.
            let c = try PostgresConnection(t)
            let dbs = try c.query("SELECT datname FROM pg_database WHERE datallowconn ORDER BY 1").compactMap { $0["datname"] }
            for db in dbs {
                let d = try PostgresConnection(t, database: db)
                let rows = try d.query(
                    """
                    SELECT coalesce(sum((xpath('/row/c/text()', query_to_xml(format('SELECT count(*) AS c FROM %I.%I', schemaname, tablename), false, true, '')))[1]::text::bigint), 0) AS n
                    FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema')
                    """)
                out[db] = Int64(rows.first?["n"] ?? "0") ?? 0
            }
        case .mysql:
            let c = try MySQLConnection(t)
            let excluded = "'mysql', 'information_schema', 'performance_schema', 'sys'"
            for r in try c.query(["SELECT schema_name AS s FROM information_schema.schemata WHERE schema_name NOT IN (\(excluded))"]) {
                if let s = r["s"] { out[s] = 0 }
            }
            let tables = try c.query([
                "SELECT table_schema AS s, table_name AS t FROM information_schema.tables WHERE table_type = 'BASE TABLE' AND table_schema NOT IN (\(excluded))"
            ])
            for r in tables {
                guard let s = r["s"], let tb = r["t"] else { continue }
                func q(_ x: String) -> String { "`" + x.replacing("`", with: "``") + "`" }
                let n = try c.query(["SELECT COUNT(*) AS n FROM \(q(s)).\(q(tb))"]).first?["n"].flatMap { Int64($0) } ?? 0
                out[s, default: 0] += n
            }
        case .redis:
            let c = try RedisConnection(t)
            for line in try c.command(["INFO", "keyspace"]).split(whereSeparator: \.isNewline) where line.hasPrefix("db") {
                let parts = line.split(separator: ":", maxSplits: 1)
                guard parts.count == 2, let keys = parts[1].split(separator: ",").first(where: { $0.hasPrefix("keys=") }) else { continue }
                out[String(parts[0])] = Int64(keys.dropFirst(5))
            }
        }
        return out
    }
}
