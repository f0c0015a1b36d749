// The run catalog: one row per backup run the scheduler (or `stowage backup`) started, in an
// embedded SQLite database (GRDB). It is a cache for `stowage status` and for the scheduler's
// restarts, never the record of a backup: the storage is. Deleting the catalog loses history
// only; the scheduler then asks the storage for each layer's last backup.
//
// GRDB runs every statement on its own serial queue (the async methods below), never on
// Swift's cooperative pool.
import Fleet
import Foundation
import GRDB
import Operations
import Remote
import Storage
import Support
import Topology

package struct RunRecord: Codable, Sendable, Equatable, FetchableRecord, MutablePersistableRecord {
    package static let databaseTableName = "runs"

    package enum Outcome: String, Codable, Sendable {
        /// Started and not ended (or the scheduler died: see `interrupted`).
        case running
        case ok
        /// Committed, with something to look at (a replica missed, retention failed, notes).
        case warnings
        case failed
        /// Cancelled at shutdown after the grace period.
        case cancelled
        /// The scheduler was killed while it ran; nothing was committed by it unless the storage says so.
        case interrupted
        /// A due run not started: the previous run of the layer still ran (it runs once afterwards).
        case skipped
    }

    package var id: Int64?
    package var layer: String
    package var storage: String
    /// schedule, make-up, retry, manual.
    package var trigger: String
    /// The slot this run is for.
    package var scheduledFor: Date?
    package var started: Date
    package var ended: Date?
    package var outcome: Outcome
    package var attempt: Int
    package var backup: String?
    package var sourceNode: String?
    package var rawBytes: Int64?
    package var storedBytes: Int64?
    /// What this backup added to the storage (the rest was there already).
    package var newBytes: Int64?
    package var exitCode: Int?
    package var error: String?
    /// The scheduler process that ran it (to tell its own running rows from a dead one's).
    package var schedulerPid: Int?

    package init(layer: String, storage: String, trigger: String, scheduledFor: Date?, started: Date, attempt: Int, schedulerPid: Int?) {
        self.layer = layer
        self.storage = storage
        self.trigger = trigger
        self.scheduledFor = scheduledFor
        self.started = started
        self.outcome = .running
        self.attempt = attempt
        self.schedulerPid = schedulerPid
    }

    package mutating func didInsert(_ inserted: InsertionSuccess) { id = inserted.rowID }

    package var seconds: Double? { ended.map { $0.timeIntervalSince(started) } }
}

/// One scheduler process as the catalog last heard of it.
package struct SchedulerBeat: Codable, Sendable, Equatable, FetchableRecord, PersistableRecord {
    package static let databaseTableName = "schedulers"
    package var host: String
    package var pid: Int
    package var started: Date
    package var seen: Date
    package var stopped: Date?

    package init(host: String, pid: Int, started: Date, seen: Date, stopped: Date? = nil) {
        self.host = host
        self.pid = pid
        self.started = started
        self.seen = seen
        self.stopped = stopped
    }
}

package final class RunCatalog: Sendable {
    package let path: String
    let pool: DatabasePool

    /// Opens (or creates) the catalog at `path`.
    package init(path: String) throws(StowageError) {
        self.path = path
        do {
            try FileManager.default.createDirectory(
                atPath: URL(fileURLWithPath: path).deletingLastPathComponent().path,
                withIntermediateDirectories: true)
            var config = Configuration()
            // The scheduler writes while `stowage backup` or `status` may open it too.
            config.busyMode = .timeout(10)
            pool = try DatabasePool(path: path, configuration: config)
            var migrator = DatabaseMigrator()
            migrator.registerMigration("v1") { db in
                try db.create(table: "runs") { t in
                    t.autoIncrementedPrimaryKey("id")
                    t.column("layer", .text).notNull().indexed()
                    t.column("storage", .text).notNull()
                    t.column("trigger", .text).notNull()
                    t.column("scheduledFor", .datetime)
                    t.column("started", .datetime).notNull()
                    t.column("ended", .datetime)
                    t.column("outcome", .text).notNull()
                    t.column("attempt", .integer).notNull()
                    t.column("backup", .text)
                    t.column("sourceNode", .text)
                    t.column("rawBytes", .integer)
                    t.column("storedBytes", .integer)
                    t.column("exitCode", .integer)
                    t.column("error", .text)
                    t.column("schedulerPid", .integer)
                }
            }
            // Each scheduler's heartbeat: `status` tells a scheduler that runs from one that
            // stopped (cleanly, with `stopped` set) or stopped reporting (killed, hung).
            migrator.registerMigration("v2-schedulers") { db in
                try db.create(table: "schedulers") { t in
                    t.column("host", .text).notNull()
                    t.column("pid", .integer).notNull()
                    t.column("started", .datetime).notNull()
                    t.column("seen", .datetime).notNull()
                    t.column("stopped", .datetime)
                    t.primaryKey(["host", "pid"])
                }
            }
            migrator.registerMigration("v3-new-bytes") { db in
                try db.alter(table: "runs") { t in t.add(column: "newBytes", .integer) }
            }
            // The REST API's tokens (hashes only) and the audit trail of its mutating calls.
            migrator.registerMigration("v4-api") { db in
                try db.create(table: "api_tokens") { t in
                    t.column("id", .text).primaryKey()
                    t.column("name", .text).notNull()
                    t.column("role", .text).notNull()
                    t.column("environments", .text).notNull()
                    t.column("hash", .text).notNull().unique()
                    t.column("created", .datetime).notNull()
                    t.column("revoked", .datetime)
                }
                try db.create(table: "audit") { t in
                    t.autoIncrementedPrimaryKey("id")
                    t.column("at", .datetime).notNull().indexed()
                    t.column("tokenID", .text).notNull()
                    t.column("tokenName", .text).notNull()
                    t.column("method", .text).notNull()
                    t.column("path", .text).notNull()
                    t.column("action", .text).notNull()
                    t.column("target", .text)
                    t.column("status", .integer).notNull()
                    t.column("outcome", .text).notNull()
                    t.column("detail", .text)
                }
            }
            // A dashboard password on a token (scrypt; docs/api.md): signs in by the token's name.
            migrator.registerMigration("v5-passwords") { db in
                try db.alter(table: "api_tokens") { t in t.add(column: "password", .text) }
            }
            try migrator.migrate(pool)
        } catch {
            throw StowageError(
                .invalidInventory, "cannot open the run catalog \(path): \(error)",
                hint: "it is a cache: move it away and a new one is started (scheduler.catalog in the inventory sets its place)")
        }
    }

    /// Opens (or creates and migrates) the catalog on a thread of its own: opening runs
    /// SQLite's blocking calls, which stay off Swift's cooperative pool.
    package static func open(path: String) async throws(StowageError) -> RunCatalog {
        let result = await DedicatedThread.run("open catalog") { () -> Result<RunCatalog, StowageError> in
            do throws(StowageError) { return .success(try RunCatalog(path: path)) } catch { return .failure(error) }
        }
        return try result.get()
    }

    func failure(_ error: Error) -> StowageError { fail(error) }

    private func fail(_ error: Error) -> StowageError {
        StowageError(.internalError, "run catalog \(path): \(error)", hint: "it is a cache: move it away and a new one is started")
    }

    /// Records a started run and returns it with its id.
    package func start(_ r: RunRecord) async throws(StowageError) -> RunRecord {
        do {
            return try await pool.write { db in
                var r = r
                try r.insert(db)
                return r
            }
        } catch { throw fail(error) }
    }

    package func finish(_ r: RunRecord) async throws(StowageError) {
        do { try await pool.write { db in try r.update(db) } } catch { throw fail(error) }
    }

    /// Marks the running rows of schedulers other than `alive` as interrupted (a restart
    /// after a kill); returns them.
    package func markInterrupted(exceptPid alive: Int, at now: Date) async throws(StowageError) -> [RunRecord] {
        do {
            return try await pool.write { db in
                var rows = try RunRecord.filter(Column("outcome") == RunRecord.Outcome.running.rawValue)
                    .filter(Column("schedulerPid") != alive).fetchAll(db)
                for i in rows.indices {
                    rows[i].outcome = .interrupted
                    rows[i].ended = now
                    rows[i].error = "the scheduler stopped while this run was going on (killed or crashed)"
                    try rows[i].update(db)
                }
                return rows
            }
        } catch { throw fail(error) }
    }

    /// Runs of a layer (or all), newest first.
    package func runs(layer: String? = nil, limit: Int = 1000) async throws(StowageError) -> [RunRecord] {
        do {
            return try await pool.read { db in
                var q = RunRecord.all()
                if let layer { q = q.filter(Column("layer") == layer) }
                return try q.order(Column("started").desc, Column("id").desc).limit(limit).fetchAll(db)
            }
        } catch { throw fail(error) }
    }

    /// The newest backup run of each layer that ended (any outcome but running and skipped;
    /// restores are in the catalog too, but are not the layer's last backup run).
    package func lastRuns() async throws(StowageError) -> [String: RunRecord] {
        do {
            return try await pool.read { db in
                let rows = try RunRecord.fetchAll(
                    db,
                    sql: """
                        SELECT * FROM runs r WHERE id = (SELECT id FROM runs WHERE layer = r.layer AND outcome NOT IN ('running', 'skipped') AND trigger != 'restore'
                                                         ORDER BY started DESC, id DESC LIMIT 1)
                        """)
                return Dictionary(rows.map { ($0.layer, $0) }, uniquingKeysWith: { a, _ in a })
            }
        } catch { throw fail(error) }
    }

    /// The newest slot of each layer that a run was made for and ended (succeeded or failed
    /// for good): with the storage's newest backup, where make-up runs are counted from. An
    /// interrupted or cancelled run does not count: its slot is made up.
    package func lastAttemptedSlots() async throws(StowageError) -> [String: Date] {
        do {
            return try await pool.read { db in
                let rows = try Row.fetchAll(
                    db,
                    sql: """
                        SELECT layer, MAX(scheduledFor) AS t FROM runs
                        WHERE outcome NOT IN ('running', 'interrupted', 'cancelled') AND scheduledFor IS NOT NULL GROUP BY layer
                        """)
                var out: [String: Date] = [:]
                for r in rows { if let l: String = r["layer"], let t: Date = r["t"] { out[l] = t } }
                return out
            }
        } catch { throw fail(error) }
    }

    /// Records that this scheduler is alive (or, with `stopped`, that it ended cleanly).
    package func beat(_ b: SchedulerBeat) async throws(StowageError) {
        do { try await pool.write { db in try b.save(db) } } catch { throw fail(error) }
    }

    /// The schedulers heard of, the most recently seen first.
    package func schedulers(limit: Int = 10) async throws(StowageError) -> [SchedulerBeat] {
        do {
            return try await pool.read { db in try SchedulerBeat.order(Column("seen").desc).limit(limit).fetchAll(db) }
        } catch { throw fail(error) }
    }

    /// Per layer, what the metrics show: the newest successful backup run, the runs and
    /// restores by outcome, and the failed runs since the last success.
    package func layerStats() async throws(StowageError) -> [String: LayerRunStats] {
        do {
            return try await pool.read { db in
                var out: [String: LayerRunStats] = [:]
                for row in try Row.fetchAll(db, sql: "SELECT layer, trigger, outcome, COUNT(*) AS n FROM runs GROUP BY layer, trigger = 'restore', outcome") {
                    guard let layer: String = row["layer"], let outcome: String = row["outcome"], let n: Int = row["n"] else { continue }
                    let trigger: String = row["trigger"] ?? ""
                    if trigger == "restore" {
                        out[layer, default: .init()].restores[outcome, default: 0] += n
                    } else {
                        out[layer, default: .init()].runs[outcome, default: 0] += n
                    }
                }
                let lastOK = try RunRecord.fetchAll(
                    db,
                    sql: """
                        SELECT * FROM runs r WHERE id = (SELECT id FROM runs WHERE layer = r.layer AND outcome IN ('ok', 'warnings') AND trigger != 'restore'
                                                         ORDER BY started DESC, id DESC LIMIT 1)
                        """)
                for r in lastOK { out[r.layer, default: .init()].lastSuccess = r }
                for row in try Row.fetchAll(
                    db,
                    sql: """
                        SELECT layer, COUNT(*) AS n FROM runs r WHERE outcome = 'failed' AND trigger != 'restore'
                        AND started > COALESCE((SELECT MAX(started) FROM runs WHERE layer = r.layer AND outcome IN ('ok', 'warnings') AND trigger != 'restore'), 0)
                        GROUP BY layer
                        """)
                {
                    if let layer: String = row["layer"], let n: Int = row["n"] { out[layer, default: .init()].failuresSinceSuccess = n }
                }
                return out
            }
        } catch { throw fail(error) }
    }
}

extension RunCatalog {
    // MARK: - API tokens and the audit trail

    package func addToken(_ t: APIToken) async throws(StowageError) {
        do {
            try await pool.write { db in
                try db.execute(
                    sql: "INSERT INTO api_tokens (id, name, role, environments, hash, created, revoked) VALUES (?, ?, ?, ?, ?, ?, NULL)",
                    arguments: [t.id, t.name, t.role.rawValue, t.environments.joined(separator: ","), t.hash, t.created])
            }
        } catch { throw failure(error) }
    }

    /// Every token, revoked ones too, oldest first.
    package func tokens() async throws(StowageError) -> [APIToken] {
        do {
            return try await pool.read { db in try Row.fetchAll(db, sql: "SELECT * FROM api_tokens ORDER BY created, id").compactMap(Self.token) }
        } catch { throw failure(error) }
    }

    /// The token whose secret hashes to `hash`, unless revoked.
    package func activeToken(hash: String) async throws(StowageError) -> APIToken? {
        do {
            return try await pool.read { db in
                try Row.fetchOne(db, sql: "SELECT * FROM api_tokens WHERE hash = ? AND revoked IS NULL", arguments: [hash]).flatMap(Self.token)
            }
        } catch { throw failure(error) }
    }

    /// The token `id`, unless revoked (a dashboard session checks it on every request).
    package func activeToken(id: String) async throws(StowageError) -> APIToken? {
        do {
            return try await pool.read { db in
                try Row.fetchOne(db, sql: "SELECT * FROM api_tokens WHERE id = ? AND revoked IS NULL", arguments: [id]).flatMap(Self.token)
            }
        } catch { throw failure(error) }
    }

    /// Sets the dashboard password (its scrypt record) of token `id`.
    package func setPassword(id: String, record: String) async throws(StowageError) {
        do {
            try await pool.write { db in try db.execute(sql: "UPDATE api_tokens SET password = ? WHERE id = ?", arguments: [record, id]) }
        } catch { throw failure(error) }
    }

    /// The active tokens named `name` that have a password, with its record.
    package func passwordLogins(name: String) async throws(StowageError) -> [(APIToken, String)] {
        do {
            return try await pool.read { db in
                try Row.fetchAll(
                    db, sql: "SELECT * FROM api_tokens WHERE name = ? AND password IS NOT NULL AND revoked IS NULL", arguments: [name]
                ).compactMap { r in Self.token(r).flatMap { t in (r["password"] as String?).map { (t, $0) } } }
            }
        } catch { throw failure(error) }
    }

    /// Revokes a token by id; false when there is none (or it was revoked already).
    package func revokeToken(id: String, at now: Date) async throws(StowageError) -> Bool {
        do {
            return try await pool.write { db in
                try db.execute(sql: "UPDATE api_tokens SET revoked = ? WHERE id = ? AND revoked IS NULL", arguments: [now, id])
                return db.changesCount > 0
            }
        } catch { throw failure(error) }
    }

    private static func token(_ r: Row) -> APIToken? {
        guard let id: String = r["id"], let name: String = r["name"], let roleText: String = r["role"], let role = APIRole(rawValue: roleText),
            let envs: String = r["environments"], let hash: String = r["hash"], let created: Date = r["created"]
        else { return nil }
        return APIToken(
            id: id, name: name, role: role, environments: envs.split(separator: ",").map(String.init), hash: hash, created: created, revoked: r["revoked"])
    }

    package func audit(_ a: AuditRecord) async throws(StowageError) {
        do {
            try await pool.write { db in
                try db.execute(
                    sql:
                        "INSERT INTO audit (at, tokenID, tokenName, method, path, action, target, status, outcome, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    arguments: [a.at, a.tokenID, a.tokenName, a.method, a.path, a.action, a.target, a.status, a.outcome, a.detail])
            }
        } catch { throw failure(error) }
    }

    /// The audit trail, newest first.
    package func auditTrail(limit: Int = 1000) async throws(StowageError) -> [AuditRecord] {
        do {
            return try await pool.read { db in
                try Row.fetchAll(db, sql: "SELECT * FROM audit ORDER BY id DESC LIMIT ?", arguments: [limit]).map { r in
                    var a = AuditRecord(
                        at: r["at"], tokenID: r["tokenID"], tokenName: r["tokenName"], method: r["method"], path: r["path"], action: r["action"],
                        target: r["target"], status: r["status"], outcome: r["outcome"], detail: r["detail"])
                    a.id = r["id"]
                    return a
                }
            }
        } catch { throw failure(error) }
    }
}

/// A layer's runs as the catalog knows them (for metrics).
package struct LayerRunStats: Sendable, Equatable {
    package var lastSuccess: RunRecord?
    /// Backup runs by outcome, and restores by outcome.
    package var runs: [String: Int] = [:]
    package var restores: [String: Int] = [:]
    package var failuresSinceSuccess = 0
    package init() {}
}
