// The catalog several coordinators share (scheduler.shared_catalog: PostgreSQL): who is
// alive, who holds which layer (leases with an expiry in the server's clock), which slot has
// been claimed by whom, and every coordinator's runs. Schema in docs/coordinators.md;
// created and migrated here, under a transaction-scoped advisory lock so that coordinators
// starting together do not race on CREATE TABLE.
//
// libpq is blocking: every call runs on a thread of its own (never the cooperative pool),
// one at a time per coordinator (one connection), with the probes' timeouts. A connection
// that failed is dropped and opened again at the next call.
import Fleet
import Foundation
import Support
import Topology

package final class SharedCatalog: @unchecked Sendable {
    package let spec: SharedCatalogSpec
    private let password: Secret
    private let lock = NSLock()
    private var connection: PostgresConnection?

    /// The schema version this build writes (docs/coordinators.md, "Schema").
    package static let schemaVersion = 1

    package init(_ spec: SharedCatalogSpec) throws(StowageError) {
        self.spec = spec
        guard let p = try spec.credentials.resolvePassword(layer: "scheduler.shared_catalog") else {
            throw StowageError(.invalidInventory, "scheduler.shared_catalog has no password", hint: "add password_file: PATH")
        }
        password = p
    }

    /// Where, for messages (never the password).
    package var address: String { "\(spec.user)@\(spec.host):\(spec.port)/\(spec.database)" }

    /// One statement (parameters apart), on a thread of its own.
    func query(_ sql: String, _ params: [String?] = []) async throws(StowageError) -> [[String: String]] {
        let result: Result<[[String: String]], ProbeFailure> = await DedicatedThread.run("shared-catalog") { [self] in
            lock.lock()
            defer { lock.unlock() }
            do throws(ProbeFailure) {
                if connection == nil {
                    connection = try PostgresConnection(
                        ProbeTarget(
                            name: "shared catalog", endpoint: Endpoint(host: spec.host, port: spec.port), engine: .postgresql, user: spec.user,
                            password: password, connectTimeout: 3, queryTimeout: max(2, spec.lease / 3)),
                        database: spec.database, applicationName: "stowage-coordinator")
                }
                return .success(params.isEmpty ? try connection!.query(sql) : try connection!.query(sql, params))
            } catch {
                // Whatever went wrong, the next call starts from a new connection.
                if error.kind != .queryFailed { connection = nil }
                return .failure(error)
            }
        }
        switch result {
        case .success(let rows): return rows
        case .failure(let f):
            let status: ExitStatus = f.kind == .authenticationFailed ? .credentialsRejected : (f.kind == .queryFailed ? .internalError : .nodeUnreachable)
            throw StowageError(
                status, "shared catalog \(address): \(f.message)",
                hint: f.kind == .authenticationFailed
                    ? "check scheduler.shared_catalog's user and password file" : "is the catalog's PostgreSQL server up and reachable from here?")
        }
    }

    /// Creates or migrates the schema (idempotent; safe with several coordinators at once).
    package func migrate() async throws(StowageError) {
        _ = try await query(
            """
            BEGIN;
            SELECT pg_advisory_xact_lock(72460017);
            CREATE TABLE IF NOT EXISTS stowage_schema (version int NOT NULL);
            CREATE TABLE IF NOT EXISTS coordinators (
              id text PRIMARY KEY, host text NOT NULL, pid int NOT NULL,
              started timestamptz NOT NULL, heartbeat timestamptz NOT NULL, layers int NOT NULL DEFAULT 0);
            CREATE TABLE IF NOT EXISTS leases (
              layer text PRIMARY KEY, owner text NOT NULL, expires timestamptz NOT NULL, taken timestamptz NOT NULL);
            CREATE TABLE IF NOT EXISTS slots (
              layer text NOT NULL, slot timestamptz NOT NULL, coordinator text NOT NULL, claimed timestamptz NOT NULL,
              PRIMARY KEY (layer, slot));
            CREATE TABLE IF NOT EXISTS runs (
              coordinator text NOT NULL, id bigint NOT NULL, layer text NOT NULL, trigger text NOT NULL,
              slot timestamptz, started timestamptz NOT NULL, ended timestamptz, outcome text NOT NULL,
              attempt int NOT NULL, backup text, error text, PRIMARY KEY (coordinator, id));
            CREATE INDEX IF NOT EXISTS runs_layer_started ON runs (layer, started DESC);
            CREATE INDEX IF NOT EXISTS runs_started ON runs (started);
            CREATE INDEX IF NOT EXISTS runs_running ON runs (coordinator) WHERE outcome = 'running';
            CREATE INDEX IF NOT EXISTS slots_slot ON slots (slot);
            INSERT INTO stowage_schema SELECT 1 WHERE NOT EXISTS (SELECT 1 FROM stowage_schema);
            COMMIT;
            """)
        let v = try await query("SELECT max(version) AS v FROM stowage_schema")
        if let found = v.first?["v"].flatMap(Int.init), found > Self.schemaVersion {
            throw StowageError(
                .repositoryDamaged, "shared catalog \(address) has schema version \(found); this Stowage knows \(Self.schemaVersion)",
                hint: "upgrade this coordinator to the version the others run")
        }
    }

    /// A PostgreSQL array literal of text values (sent as one parameter).
    static func array(_ values: [String]) -> String {
        "{" + values.map { "\"" + $0.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"") + "\"" }.joined(separator: ",")
            + "}"
    }

    static func epoch(_ d: Date) -> String { String(format: "%.3f", d.timeIntervalSince1970) }

    // MARK: - Coordinators and leases

    /// This coordinator is alive (and holds `layers` layers).
    package func heartbeat(_ me: CoordinatorIdentity, layers: Int) async throws(StowageError) {
        _ = try await query(
            """
            INSERT INTO coordinators (id, host, pid, started, heartbeat, layers) VALUES ($1, $2, $3::int, to_timestamp($4::float8), now(), $5::int)
            ON CONFLICT (id) DO UPDATE SET heartbeat = now(), layers = EXCLUDED.layers
            """, [me.id, me.host, String(me.pid), Self.epoch(me.started), String(layers)])
    }

    /// The coordinators whose heartbeat is younger than `within` seconds (the server's clock).
    package func live(within: Double) async throws(StowageError) -> [CoordinatorRow] {
        try await query(
            """
            SELECT id, host, pid, extract(epoch FROM started) AS started, extract(epoch FROM now() - heartbeat) AS age, layers
            FROM coordinators WHERE heartbeat > now() - make_interval(secs => $1::float8) ORDER BY id
            """, [String(within)]
        ).map(CoordinatorRow.init)
    }

    /// Takes or renews the leases on `layers` for `owner`: a layer free, expired or already
    /// the owner's is granted (expiry now + lease, in the server's clock); returns those granted.
    package func hold(_ layers: [String], owner: String, lease: Double) async throws(StowageError) -> Set<String> {
        guard !layers.isEmpty else { return [] }
        let rows = try await query(
            """
            INSERT INTO leases (layer, owner, expires, taken)
            SELECT l, $1, now() + make_interval(secs => $3::float8), now() FROM unnest($2::text[]) AS l
            ON CONFLICT (layer) DO UPDATE SET owner = EXCLUDED.owner, expires = EXCLUDED.expires,
              taken = CASE WHEN leases.owner = EXCLUDED.owner THEN leases.taken ELSE now() END
            WHERE leases.owner = EXCLUDED.owner OR leases.expires < now()
            RETURNING layer
            """, [owner, Self.array(layers), String(lease)])
        return Set(rows.compactMap { $0["layer"] })
    }

    /// Gives leases up at once (rebalancing, shutdown), so others need not wait for expiry.
    package func release(_ layers: [String], owner: String) async throws(StowageError) {
        guard !layers.isEmpty else { return }
        _ = try await query("DELETE FROM leases WHERE owner = $1 AND layer = ANY($2::text[])", [owner, Self.array(layers)])
    }

    /// A clean stop: every lease and the coordinator's row go.
    package func retire(_ me: CoordinatorIdentity) async throws(StowageError) {
        _ = try await query("DELETE FROM leases WHERE owner = $1", [me.id])
        _ = try await query("DELETE FROM coordinators WHERE id = $1", [me.id])
    }

    /// Every lease, live or not: the fleet view's owner column.
    package func leases() async throws(StowageError) -> [LeaseRow] {
        try await query("SELECT layer, owner, extract(epoch FROM expires - now()) AS remaining FROM leases ORDER BY layer").map(LeaseRow.init)
    }

    // MARK: - Slots and runs

    /// What only grows: slot claims after 7 days (a slot is never claimed again that late),
    /// runs after 30 days, coordinators not heard of for a day. Any coordinator may do it.
    package func housekeep() async throws(StowageError) {
        _ = try await query(
            """
            DELETE FROM slots WHERE slot < now() - interval '7 days';
            DELETE FROM runs WHERE started < now() - interval '30 days';
            DELETE FROM coordinators WHERE heartbeat < now() - interval '1 day';
            """)
    }

    /// Runs recorded `running` by coordinators no longer alive: `interrupted`.
    package func interruptRunsOfTheDead(within: Double) async throws(StowageError) {
        _ = try await query(
            """
            UPDATE runs SET outcome = 'interrupted', ended = now(), error = 'its coordinator stopped while it ran'
            WHERE outcome = 'running' AND coordinator NOT IN (SELECT id FROM coordinators WHERE heartbeat > now() - make_interval(secs => $1::float8))
            """, [String(within)])
    }

    /// Claims `slot` of `layer` for `owner`: true if it is (now or already) this owner's; false
    /// with the other claimant's id when another coordinator claimed it first.
    package func claim(layer: String, slot: Date, owner: String) async throws(StowageError) -> (mine: Bool, by: String) {
        let rows = try await query(
            """
            WITH ins AS (
              INSERT INTO slots (layer, slot, coordinator, claimed) VALUES ($1, to_timestamp($2::float8), $3, now())
              ON CONFLICT (layer, slot) DO NOTHING RETURNING coordinator)
            SELECT coordinator FROM ins UNION ALL
            SELECT coordinator FROM slots WHERE layer = $1 AND slot = to_timestamp($2::float8)
            """, [layer, Self.epoch(slot), owner])
        // Two claims at once: the one that waited on the other's row sees neither its own
        // insert nor (in that statement's snapshot) the other's row; a new statement does.
        var by = rows.first?["coordinator"]
        if by == nil {
            by = try await query("SELECT coordinator FROM slots WHERE layer = $1 AND slot = to_timestamp($2::float8)", [layer, Self.epoch(slot)])
                .first?["coordinator"]
        }
        guard let by else { throw StowageError(.internalError, "shared catalog \(address): slot \(layer) at \(Self.epoch(slot)) neither claimed nor found") }
        return (by == owner, by)
    }

    /// A run as this coordinator records it (upserted at its start and end).
    package func record(_ r: RunRecord, coordinator: String) async throws(StowageError) {
        guard let id = r.id else { return }
        _ = try await query(
            """
            INSERT INTO runs (coordinator, id, layer, trigger, slot, started, ended, outcome, attempt, backup, error)
            VALUES ($1, $2::bigint, $3, $4, to_timestamp($5::float8), to_timestamp($6::float8), to_timestamp($7::float8), $8, $9::int, $10, $11)
            ON CONFLICT (coordinator, id) DO UPDATE SET ended = EXCLUDED.ended, outcome = EXCLUDED.outcome,
              backup = EXCLUDED.backup, error = EXCLUDED.error
            """,
            [
                coordinator, String(id), r.layer, r.trigger, r.scheduledFor.map(Self.epoch), Self.epoch(r.started), r.ended.map(Self.epoch),
                r.outcome.rawValue, String(r.attempt), r.backup, r.error,
            ])
    }

    /// Each layer's newest run that ended (not skipped, not a restore): the fleet view's "last run".
    package func latestRuns() async throws(StowageError) -> [SharedRunRow] {
        try await query(
            """
            SELECT DISTINCT ON (layer) \(SharedRunRow.columns)
            FROM runs WHERE outcome NOT IN ('running', 'skipped') AND trigger <> 'restore' ORDER BY layer, started DESC
            """
        ).map(SharedRunRow.init)
    }

    /// The fleet's runs, newest first.
    package func runs(layer: String? = nil, limit: Int = 200) async throws(StowageError) -> [SharedRunRow] {
        try await query(
            """
            SELECT \(SharedRunRow.columns)
            FROM runs WHERE ($1::text IS NULL OR layer = $1) ORDER BY started DESC LIMIT $2::int
            """, [layer, String(limit)]
        ).map(SharedRunRow.init)
    }
}

/// Who this coordinator is in the shared catalog.
package struct CoordinatorIdentity: Sendable, Equatable {
    package var id: String
    package var host: String
    package var pid: Int
    package var started: Date

    package static func make(now: Date = Date()) -> CoordinatorIdentity {
        let host = ProcessInfo.processInfo.hostName
        let pid = Int(getpid())
        let tag = String(UInt32.random(in: 0...UInt32.max), radix: 16)
        return CoordinatorIdentity(id: "\(host):\(pid):\(tag)", host: host, pid: pid, started: now)
    }
}

package struct CoordinatorRow: Sendable, Equatable, Codable {
    package var id: String
    package var host: String
    package var pid: Int
    package var started: Date
    /// Seconds since its last heartbeat.
    package var heartbeatAge: Double
    package var layers: Int

    init(_ r: [String: String]) {
        id = r["id"] ?? ""
        host = r["host"] ?? ""
        pid = Int(r["pid"] ?? "") ?? 0
        started = Date(timeIntervalSince1970: Double(r["started"] ?? "") ?? 0)
        heartbeatAge = Double(r["age"] ?? "") ?? 0
        layers = Int(r["layers"] ?? "") ?? 0
    }
}

package struct LeaseRow: Sendable, Equatable, Codable {
    package var layer: String
    package var owner: String
    /// Seconds until it expires (negative: expired, free to take).
    package var remaining: Double

    init(_ r: [String: String]) {
        layer = r["layer"] ?? ""
        owner = r["owner"] ?? ""
        remaining = Double(r["remaining"] ?? "") ?? 0
    }
}

extension SharedRunRow {
    /// As the local catalog's record (for the fleet status's judgement).
    func record(storage: String) -> RunRecord {
        var r = RunRecord(layer: layer, storage: storage, trigger: trigger, scheduledFor: slot, started: started, attempt: attempt, schedulerPid: nil)
        r.ended = ended
        r.outcome = RunRecord.Outcome(rawValue: outcome) ?? .failed
        r.backup = backup
        r.error = error
        return r
    }
}

package struct SharedRunRow: Sendable, Equatable, Codable {
    package var coordinator: String
    package var id: Int64
    package var layer: String
    package var trigger: String
    package var slot: Date?
    package var started: Date
    package var ended: Date?
    package var outcome: String
    package var attempt: Int
    package var backup: String?
    package var error: String?

    /// What a query reading these rows selects from `runs` (times as epoch seconds).
    static let columns = """
        coordinator, id, layer, trigger, extract(epoch FROM slot) AS slot, extract(epoch FROM started) AS started,
        extract(epoch FROM ended) AS ended, outcome, attempt, backup, error
        """

    init(_ r: [String: String]) {
        func date(_ k: String) -> Date? { r[k].flatMap(Double.init).map(Date.init(timeIntervalSince1970:)) }
        coordinator = r["coordinator"] ?? ""
        id = Int64(r["id"] ?? "") ?? 0
        layer = r["layer"] ?? ""
        trigger = r["trigger"] ?? ""
        slot = date("slot")
        started = date("started") ?? .distantPast
        ended = date("ended")
        outcome = r["outcome"] ?? ""
        attempt = Int(r["attempt"] ?? "") ?? 0
        backup = r["backup"]
        error = r["error"]
    }
}
