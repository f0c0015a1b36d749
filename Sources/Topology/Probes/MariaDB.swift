// The only file that talks to MariaDB Connector/C (libmysqlclient). It speaks to MySQL 8,
// MariaDB and Percona servers alike.
import CMariaDB
import Foundation
import Support

/// mysql_library_init is not thread-safe; a global `let` runs it exactly once.
private let libraryReady: Bool = mysql_server_init(0, nil, nil) == 0

final class MySQLConnection {
    private let db: UnsafeMutablePointer<MYSQL>

    init(_ t: ProbeTarget) throws(ProbeFailure) {
        guard libraryReady, let m = mysql_init(nil) else { throw ProbeFailure(.unreachable, "libmariadb could not initialise") }
        // connect covers the TCP connect; read/write bound every wait after it, including the
        // server's greeting, so a frozen server costs at most the timeouts.
        var ct = UInt32(max(1, t.connectTimeout.rounded(.up)))
        var rt = UInt32(max(1, t.queryTimeout.rounded(.up)))
        mysql_options(m, MYSQL_OPT_CONNECT_TIMEOUT, &ct)
        mysql_options(m, MYSQL_OPT_READ_TIMEOUT, &rt)
        mysql_options(m, MYSQL_OPT_WRITE_TIMEOUT, &rt)
        if mysql_real_connect(m, t.endpoint.host, t.user ?? "", t.password?.value, nil, UInt32(t.endpoint.port), nil, 0) == nil {
            let failure = Self.failure(m)
            mysql_close(m)
            throw failure
        }
        db = m
    }

    deinit { mysql_close(db) }

    /// Runs a statement; with several, the first the server understands (SHOW REPLICA STATUS
    /// on new servers, SHOW SLAVE STATUS on old ones).
    func query(_ alternatives: [String]) throws(ProbeFailure) -> [RawProbe.Row] {
        var last = ProbeFailure(.queryFailed, "no statement")
        for sql in alternatives {
            if mysql_real_query(db, sql, UInt(sql.utf8.count)) != 0 {
                last = Self.failure(db)
                // 1064 parse error, 1193 unknown variable: try the older spelling.
                if [1064, 1193].contains(mysql_errno(db)) { continue }
                throw last
            }
            guard let res = mysql_store_result(db) else {
                if mysql_field_count(db) == 0 { return [] }
                throw Self.failure(db)
            }
            defer { mysql_free_result(res) }
            let n = Int(mysql_num_fields(res))
            let fields = mysql_fetch_fields(res)!
            let names = (0..<n).map { String(cString: fields[$0].name) }
            var rows: [RawProbe.Row] = []
            while let row = mysql_fetch_row(res) {
                let lengths = mysql_fetch_lengths(res)!
                var out: RawProbe.Row = [:]
                for i in 0..<n {
                    guard let p = row[i] else { continue }
                    let bytes = UnsafeRawBufferPointer(start: p, count: Int(lengths[i]))
                    out[names[i]] = String(decoding: bytes, as: UTF8.self)
                }
                rows.append(out)
            }
            return rows
        }
        throw last
    }

    static func failure(_ m: UnsafeMutablePointer<MYSQL>) -> ProbeFailure {
        let code = mysql_errno(m)
        let msg = String(cString: mysql_error(m)).oneLine()
        switch code {
        case 1044, 1045, 1698, 1251: return ProbeFailure(.authenticationFailed, msg)
        case 2013, 2006: return ProbeFailure(.timeout, msg)
        case 2002, 2003, 2005:
            return ProbeFailure(msg.contains("(110)") || msg.lowercased().contains("timed out") ? .timeout : .unreachable, msg)
        default: return ProbeFailure(.queryFailed, "error \(code): \(msg)")
        }
    }
}

enum MySQLProbe {
    static func probe(_ t: ProbeTarget) throws(ProbeFailure) -> RawProbe {
        let c = try MySQLConnection(t)
        var raw = RawProbe()
        raw.results["variables"] = try c.query([MySQLQueries.variables])
        raw.results["replica_status"] = try c.query(MySQLQueries.replicaStatus)
        raw.results["replica_hosts"] = try c.query(MySQLQueries.replicaHosts)
        raw.results["wsrep"] = try c.query([MySQLQueries.wsrepStatus])
        return raw
    }
}
