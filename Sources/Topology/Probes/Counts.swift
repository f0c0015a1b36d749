// What a database holds, counted the way a dump counts it (Engines' dump counters): rows per
// database for the SQL engines (the `mysql` schema left out), keys per database for Redis.
// A restore compares these, taken on the restored server, with the backup's manifest.
import Dispatch
import Engines
import Support
import Synchronization

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
                "SELECT table_schema AS s, table_name AS t, table_rows AS r FROM information_schema.tables WHERE table_type = 'BASE TABLE' AND table_schema NOT IN (\(excluded))"
            ])
            // One COUNT(*) scans a whole index on one core; the tables are counted by up to
            // four sessions at once, the largest (by the server's estimate) first.
            let named = tables.compactMap { r -> ((String, String), Int64)? in
                guard let s = r["s"], let tb = r["t"] else { return nil }
                return ((s, tb), Int64(r["r"] ?? "") ?? 0)
            }
            let shares = spread(named, over: min(4, named.count))
            let results = Mutex<[Result<[String: Int64], ProbeFailure>]>([])
            DispatchQueue.concurrentPerform(iterations: shares.count) { w in
                let r = Result { () throws(ProbeFailure) -> [String: Int64] in
                    let session = try MySQLConnection(t)
                    var part: [String: Int64] = [:]
                    for (s, tb) in shares[w] {
                        func q(_ x: String) -> String { "`" + x.replacing("`", with: "``") + "`" }
                        part[s, default: 0] += try session.query(["SELECT COUNT(*) AS n FROM \(q(s)).\(q(tb))"]).first?["n"].flatMap { Int64($0) } ?? 0
                    }
                    return part
                }
                results.withLock { $0.append(r) }
            }
            for r in results.withLock({ $0 }) {
                for (s, n) in try r.get() { out[s, default: 0] += n }
            }
        case .redis:
            let c = try RedisConnection(t)
            out = RESP.keyspace(try c.command(["INFO", "keyspace"]))
        }
        return out
    }

    /// Items spread over `workers` lists so that the largest weights are shared out first,
    /// each onto the list that has the least so far (longest-processing-time-first).
    package static func spread<T>(_ items: [(T, Int64)], over workers: Int) -> [[T]] {
        guard workers > 0 else { return [] }
        var lists = [[T]](repeating: [], count: workers)
        var load = [Int64](repeating: 0, count: workers)
        for (item, weight) in items.sorted(by: { $0.1 > $1.1 }) {
            let w = load.indices.min { load[$0] < load[$1] }!
            lists[w].append(item)
            load[w] += max(weight, 1)
        }
        return lists
    }
}
