// The only file that talks to libpq. It owns the PGconn pointer, never lets it leave, and
// turns libpq's status codes into `ProbeFailure`s. Two users: the topology probes, and the
// coordinators' shared catalog (Scheduling's SharedCatalog), which sends its values as
// parameters apart from the statement's text.
import CLibPQ
import Foundation
import Support

/// Blocking: call from a dedicated thread (`DedicatedThread`), never the cooperative pool.
package final class PostgresConnection {
    private let conn: OpaquePointer
    private let queryTimeout: Double

    /// `applicationName` shows in the server's pg_stat_activity.
    package init(_ t: ProbeTarget, database: String = "postgres", applicationName: String = "stowage-probe") throws(ProbeFailure) {
        // Parameters go in as arrays, not a conninfo string: nothing to quote, and the
        // password stays in this process's memory only.
        var params: [(String, String)] = [
            ("host", t.endpoint.host), ("port", String(t.endpoint.port)), ("dbname", database),
            // libpq rounds connect_timeout down to whole seconds and treats 1 as 2.
            ("connect_timeout", String(max(2, Int(t.connectTimeout.rounded(.up))))),
            ("application_name", applicationName),
            // A server (or a proxy before it) that stops answering is noticed by the kernel too.
            ("keepalives", "1"), ("keepalives_idle", "5"), ("keepalives_interval", "2"), ("keepalives_count", "3"),
            // The server ends a stuck query itself too, should the client have gone.
            ("options", "-c statement_timeout=\(Int(t.queryTimeout * 1000)) -c client_min_messages=warning"),
        ]
        if let u = t.user { params.append(("user", u)) }
        if let p = t.password { params.append(("password", p.value)) }
        let keys = params.map { strdup($0.0) }
        let vals = params.map { strdup($0.1) }
        defer { (keys + vals).forEach { free($0) } }
        let k = (keys + [nil]).map { UnsafePointer<CChar>($0) }
        let v = (vals + [nil]).map { UnsafePointer<CChar>($0) }
        guard let c = PQconnectdbParams(k, v, 0) else { throw ProbeFailure(.unreachable, "libpq could not allocate a connection") }
        if PQstatus(c) != CONNECTION_OK {
            let msg = Self.clean(String(cString: PQerrorMessage(c)))
            PQfinish(c)
            throw Self.classify(msg)
        }
        conn = c
        queryTimeout = t.queryTimeout
    }

    deinit { PQfinish(conn) }

    /// Runs one statement (or several, without parameters) and returns its rows as text.
    package func query(_ sql: String) throws(ProbeFailure) -> [RawProbe.Row] {
        try collect { PQsendQuery(conn, sql) }
    }

    /// Runs one statement with `$1`, `$2`… bound to `params` (text; nil is NULL), sent apart
    /// from the statement: nothing is ever quoted into SQL.
    package func query(_ sql: String, _ params: [String?]) throws(ProbeFailure) -> [RawProbe.Row] {
        let copies = params.map { $0.map { strdup($0) } ?? nil }
        defer { copies.forEach { free($0) } }
        let values = copies.map { UnsafePointer<CChar>($0) }
        return try collect { PQsendQueryParams(conn, sql, Int32(params.count), nil, values, nil, nil, 0) }
    }

    /// Sends with `send`, then reads every result. Uses libpq's asynchronous calls with
    /// poll() so that a server that stops answering mid-query costs at most the timeout.
    private func collect(_ send: () -> Int32) throws(ProbeFailure) -> [RawProbe.Row] {
        let deadline = Deadline(seconds: queryTimeout)
        guard send() == 1 else { throw ProbeFailure(.unreachable, Self.clean(String(cString: PQerrorMessage(conn)))) }
        let fd = PQsocket(conn)
        while PQflush(conn) == 1 { try wait(fd, events: Int16(POLLOUT), deadline) }
        var rows: [RawProbe.Row] = []
        var failure: ProbeFailure?
        while true {
            while PQisBusy(conn) == 1 {
                try wait(fd, events: Int16(POLLIN), deadline)
                if PQconsumeInput(conn) == 0 { throw ProbeFailure(.unreachable, Self.clean(String(cString: PQerrorMessage(conn)))) }
            }
            guard let res = PQgetResult(conn) else { break }
            defer { PQclear(res) }
            switch PQresultStatus(res) {
            case PGRES_TUPLES_OK, PGRES_COMMAND_OK:
                let nf = PQnfields(res)
                for r in 0..<PQntuples(res) {
                    var row: RawProbe.Row = [:]
                    for f in 0..<nf where PQgetisnull(res, r, f) == 0 {
                        row[String(cString: PQfname(res, f))] = String(cString: PQgetvalue(res, r, f))
                    }
                    rows.append(row)
                }
            default:
                failure = ProbeFailure(.queryFailed, Self.clean(String(cString: PQresultErrorMessage(res))))
            }
        }
        if let failure { throw failure }
        return rows
    }

    private func wait(_ fd: Int32, events: Int16, _ deadline: Deadline) throws(ProbeFailure) {
        var p = pollfd(fd: fd, events: events, revents: 0)
        while true {
            if deadline.expired { throw ProbeFailure(.timeout, "no answer within \(formatDuration(queryTimeout))") }
            let n = poll(&p, 1, deadline.remainingMilliseconds)
            if n > 0 { return }
            if n < 0 && errno != EINTR { throw ProbeFailure(.unreachable, "poll failed: \(String(cString: strerror(errno)))") }
        }
    }

    /// libpq prefixes every connection error with where it tried; the node is named by the
    /// caller already, so keep the reason.
    static func clean(_ msg: String) -> String {
        var m = msg.oneLine()
        if let r = m.range(of: " failed: ", options: .literal), m.hasPrefix("connection to server") {
            m = String(m[r.upperBound...])
        }
        return m
    }

    static func classify(_ msg: String) -> ProbeFailure {
        let l = msg.lowercased()
        // The database the probe connects to is missing (a replica replaying a restore that
        // drops and recreates it): not the credentials' fault.
        if l.contains("database \"") && l.contains("does not exist") { return ProbeFailure(.queryFailed, msg) }
        if l.contains("authentication failed") || l.contains("no password supplied") || l.contains("does not exist")
            || l.contains("no pg_hba.conf entry") || l.contains("password")
        {
            return ProbeFailure(.authenticationFailed, msg)
        }
        if l.contains("timeout expired") || l.contains("timed out") { return ProbeFailure(.timeout, msg) }
        return ProbeFailure(.unreachable, msg)
    }
}

enum PostgresProbe {
    static func probe(_ t: ProbeTarget) throws(ProbeFailure) -> RawProbe {
        let c = try PostgresConnection(t)
        var raw = RawProbe()
        for (name, sql) in PostgresQueries.all { raw.results[name] = try c.query(sql) }
        return raw
    }
}
