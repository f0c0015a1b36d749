// Seeding, damaging and fingerprinting the lab's databases for the round-trip suite, through
// each server's admin path (PostgreSQL's socket as postgres, MariaDB's socket as root, Redis
// with REDISCLI_AUTH): no password in any test process's argv.
import Foundation
import TestSupport
import Testing

enum LabData {
    static func run(_ program: String, _ args: [String], env: [String: String?] = [:]) throws -> String {
        let r = try runCommand(program, args, env: env)
        guard r.status == 0 else {
            throw SpawnError(description: "\(program) \(args.prefix(8).joined(separator: " ")) exited \(r.status): \(r.stderr.prefix(600))")
        }
        return r.stdout
    }

    // MARK: PostgreSQL

    @discardableResult
    static func psql(_ node: String, _ sql: String, db: String = "postgres") throws -> String {
        try run(
            "/usr/sbin/runuser",
            [
                "-u", "postgres", "--", "/usr/lib/postgresql/15/bin/psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1",
                "-h", "\(Lab.dir)/run/\(node)", "-U", "postgres", "-d", db, "-c", sql,
            ])
    }

    /// The whole cluster as pg_dumpall writes it, with a fixed \restrict key.
    static func pgDumpall(_ node: String) throws -> String {
        try run(
            "/usr/sbin/runuser",
            [
                "-u", "postgres", "--", "/usr/lib/postgresql/15/bin/pg_dumpall", "-h", "\(Lab.dir)/run/\(node)",
                "-U", "postgres", "--restrict-key=stowagetest",
            ])
    }

    static func seedPostgres(_ node: String) throws {
        try psql(node, "DROP DATABASE IF EXISTS rt_shop")
        try psql(node, "DROP DATABASE IF EXISTS rt_crm")
        try psql(node, "DROP ROLE IF EXISTS rt_reader")
        try psql(node, "CREATE ROLE rt_reader LOGIN")
        try psql(node, "CREATE DATABASE rt_shop")
        try psql(node, "CREATE DATABASE rt_crm")
        try psql(
            node,
            """
            CREATE TABLE items (id int PRIMARY KEY, name text, price numeric(10,2), note text);
            INSERT INTO items SELECT g, 'item ' || g, (g % 1000) / 10.0,
                   CASE WHEN g % 3 = 0 THEN md5(g::text) ELSE repeat('lorem ipsum ', g % 7) END FROM generate_series(1, 150000) g;
            CREATE TABLE notes (id serial PRIMARY KEY, body text, created timestamptz DEFAULT '2026-11-21 03:00+00');
            INSERT INTO notes (body) SELECT 'note ' || g || E' with a tab\\t and a newline\\n' FROM generate_series(1, 500) g;
            CREATE FUNCTION total() RETURNS numeric LANGUAGE sql AS $$ SELECT sum(price) FROM items $$;
            CREATE VIEW cheap AS SELECT id, name FROM items WHERE price < 10;
            GRANT SELECT ON items TO rt_reader;
            """, db: "rt_shop")
        try psql(
            node, "CREATE TABLE people (id int PRIMARY KEY, name text); INSERT INTO people SELECT g, 'person ' || g FROM generate_series(1, 1000) g",
            db: "rt_crm")
    }

    static func damagePostgres(_ node: String) throws {
        try psql(node, "DROP DATABASE rt_crm")
        try psql(
            node, "DELETE FROM items WHERE id % 2 = 0; DROP FUNCTION total(); REVOKE ALL ON items FROM rt_reader; UPDATE notes SET body = 'x'", db: "rt_shop")
        try psql(node, "DROP ROLE rt_reader")
    }

    static func cleanPostgres(_ node: String) throws {
        try psql(node, "DROP DATABASE IF EXISTS rt_shop")
        try psql(node, "DROP DATABASE IF EXISTS rt_crm")
        try psql(node, "DROP ROLE IF EXISTS rt_reader")
    }

    // MARK: MariaDB

    @discardableResult
    static func mariadb(_ node: String, _ sql: String) throws -> String {
        try run("/usr/bin/mariadb", ["--no-defaults", "-S", "\(Lab.dir)/run/\(node).sock", "-u", "root", "-N", "-B", "-e", sql])
    }

    /// Every database as mariadb-dump writes it without comments (two dumps of the same
    /// data are byte-identical). Left out: replication and statistics tables (node state)
    /// and mysql.event and mysql.proc, whose rows carry the time an event or routine was
    /// (re)created; the events and routines themselves are compared through their CREATE
    /// EVENT / CREATE PROCEDURE statements. Routine grants are compared by query (below). A replica shows a
    /// replicated event as DISABLE ON SLAVE: normalised to the primary's DISABLE; and the
    /// server version a node stamps into an account's privileges (`version_id`, which a
    /// replica adds to mariadb.sys on its own) is dropped.
    static func mariadbDump(_ node: String) throws -> String {
        let dump = try run(
            "/usr/bin/mariadb-dump",
            [
                "--no-defaults", "-S", "\(Lab.dir)/run/\(node).sock", "-u", "root", "--all-databases",
                "--skip-comments", "--routines", "--events", "--triggers", "--single-transaction", "--hex-blob",
                "--ignore-table=mysql.gtid_slave_pos", "--ignore-table=mysql.innodb_index_stats",
                "--ignore-table=mysql.innodb_table_stats", "--ignore-table=mysql.event", "--ignore-table=mysql.proc",
                "--ignore-table=mysql.procs_priv",
            ]
        )
        .replacing(" DISABLE ON SLAVE ", with: " DISABLE ")
        .replacing(/,\\"version_id\\":\d+/, with: "")
        // Routine grants, without those a replica adds on its own: replaying CREATE PROCEDURE
        // of the system routines (definer mariadb.sys), its SQL thread grants the definer
        // EXECUTE and ALTER ROUTINE (automatic_sp_privileges); the primary does not.
        let grants = try mariadb(
            node,
            "SELECT Host, Db, User, Routine_name, Routine_type, Grantor, Proc_priv FROM mysql.procs_priv WHERE User <> 'mariadb.sys' ORDER BY 1, 2, 3, 4, 5")
        return dump + "\n-- procs_priv\n" + grants + "\n-- grants\n" + (try mariadbGrants(node))
    }

    /// SHOW GRANTS of every account, as the server itself states them (global, database,
    /// table, column and routine level). mariadb.sys's routine-level grants are left out
    /// for the reason above; the rest of its grants count.
    static func mariadbGrants(_ node: String) throws -> String {
        let accounts = try mariadb(node, "SELECT CONCAT(QUOTE(User), '@', QUOTE(Host)) FROM mysql.global_priv ORDER BY User, Host")
            .split(separator: "\n").map(String.init)
        var out = ""
        for a in accounts {
            let lines = try mariadb(node, "SHOW GRANTS FOR \(a)").split(separator: "\n").map(String.init)
            let kept = a.hasPrefix("'mariadb.sys'") ? lines.filter { !$0.contains(" ON PROCEDURE ") && !$0.contains(" ON FUNCTION ") } : lines
            out += "\(a):\n" + kept.sorted().joined(separator: "\n") + "\n"
        }
        return out
    }

    static func seedMariaDB(_ node: String) throws {
        try mariadb(
            node,
            """
            DROP DATABASE IF EXISTS rt_shop; DROP DATABASE IF EXISTS rt_crm; DROP USER IF EXISTS 'rt_reader'@'%'; DROP USER IF EXISTS 'rt_reporter'@'%';
            CREATE DATABASE rt_shop; CREATE DATABASE rt_crm;
            CREATE TABLE rt_shop.items (id INT PRIMARY KEY, name VARCHAR(100), price DECIMAL(10,2), note TEXT, data BLOB);
            INSERT INTO rt_shop.items SELECT seq, CONCAT('item ', seq), (seq % 1000) / 10, IF(seq % 3 = 0, MD5(seq), REPEAT('lorem ipsum ', seq % 7)),
                   IF(seq % 5 = 0, UNHEX(MD5(seq)), NULL) FROM rt_shop.seq_1_to_100000;
            INSERT INTO rt_shop.items VALUES (100001, 'it''s (tricky), isn''t it', 1.00, 'a \\\\ backslash', NULL);
            CREATE TABLE rt_shop.audit (id INT AUTO_INCREMENT PRIMARY KEY, item INT);
            CREATE TRIGGER rt_shop.items_audit AFTER UPDATE ON rt_shop.items FOR EACH ROW INSERT INTO rt_shop.audit (item) VALUES (NEW.id);
            CREATE PROCEDURE rt_shop.total() SELECT SUM(price) FROM rt_shop.items;
            CREATE EVENT rt_shop.nightly ON SCHEDULE EVERY 1 DAY STARTS '2030-01-01 03:00:00' DISABLE DO DELETE FROM rt_shop.audit;
            CREATE TABLE rt_crm.people (id INT PRIMARY KEY, name VARCHAR(100));
            INSERT INTO rt_crm.people SELECT seq, CONCAT('person ', seq) FROM rt_crm.seq_1_to_1000;
            CREATE USER 'rt_reader'@'%' IDENTIFIED BY 'rt-reader-pw';
            GRANT SELECT ON rt_shop.* TO 'rt_reader'@'%';
            CREATE USER 'rt_reporter'@'%' IDENTIFIED BY 'rt-reporter-pw';
            GRANT EXECUTE ON PROCEDURE rt_shop.total TO 'rt_reporter'@'%';
            GRANT SELECT (name, price) ON rt_shop.items TO 'rt_reporter'@'%';
            GRANT INSERT ON rt_crm.people TO 'rt_reporter'@'%';
            """)
    }

    static func damageMariaDB(_ node: String) throws {
        try mariadb(
            node,
            """
            DROP DATABASE rt_crm; DELETE FROM rt_shop.items WHERE id % 2 = 0; DROP PROCEDURE rt_shop.total;
            DROP USER 'rt_reader'@'%'; UPDATE rt_shop.items SET name = 'x' WHERE id < 10;
            REVOKE SELECT (name, price) ON rt_shop.items FROM 'rt_reporter'@'%';
            """)
    }

    static func cleanMariaDB(_ node: String) throws {
        try mariadb(
            node, "DROP DATABASE IF EXISTS rt_shop; DROP DATABASE IF EXISTS rt_crm; DROP USER IF EXISTS 'rt_reader'@'%'; DROP USER IF EXISTS 'rt_reporter'@'%'")
    }

    // MARK: Redis

    static func address(_ node: String) throws -> String {
        let inv = try String(contentsOfFile: Lab.inventory, encoding: .utf8)
        guard let line = inv.split(separator: "\n").first(where: { $0.contains("name: \(node),") }),
            let r = line.range(of: "db: "), let colon = line[r.upperBound...].firstIndex(of: ":")
        else {
            throw SpawnError(description: "no node \(node) in \(Lab.inventory)")
        }
        return String(line[r.upperBound..<colon])
    }

    @discardableResult
    static func redis(_ node: String, _ args: [String], cluster: Bool = false) throws -> String {
        try run(
            "/usr/bin/redis-cli", (cluster ? ["-c"] : []) + ["-h", try address(node), "-p", "6379"] + args,
            env: ["REDISCLI_AUTH": try Lab.secret("redis-password")])
    }

    static let seedScript = """
        local n = tonumber(ARGV[1])
        local p = ARGV[2]
        for i = 1, n do
          redis.call('SET', p .. 's:' .. i, string.rep('v', i % 300))
          if i % 10 == 0 then redis.call('RPUSH', p .. 'l:' .. i, 'a', 'b', i) end
          if i % 10 == 1 then redis.call('HSET', p .. 'h:' .. i, 'f1', i, 'f2', 'two') end
          if i % 10 == 2 then redis.call('SADD', p .. 'set:' .. i, 'x', 'y', i) end
          if i % 10 == 3 then redis.call('ZADD', p .. 'z:' .. i, 1, 'one', 2.5, 'two') end
          if i % 10 == 4 then redis.call('XADD', p .. 'x:' .. i, '1-1', 'f', 'v') end
          if i % 10 == 5 then redis.call('SET', p .. 't:' .. i, 'expiring', 'EX', 3000 + i) end
        end
        return n
        """

    /// `db key sha1(value) expiry` for every key of databases 0...`maxDB`. The value is the
    /// type and its content in a canonical order: DUMP payloads of hash-table sets and hashes
    /// follow insertion order, which a restore does not keep (same data, other bytes). The
    /// expiry is the absolute time in ms (-1: none), so fingerprints taken at different
    /// times compare.
    static let fingerprintScript = """
        local function content(k)
          local t = redis.call('TYPE', k)['ok']
          if t == 'string' then return t .. ':' .. redis.call('GET', k) end
          if t == 'list' then return t .. ':' .. table.concat(redis.call('LRANGE', k, 0, -1), '\\0') end
          if t == 'set' then
            local m = redis.call('SMEMBERS', k)
            table.sort(m)
            return t .. ':' .. table.concat(m, '\\0')
          end
          if t == 'zset' then return t .. ':' .. table.concat(redis.call('ZRANGE', k, 0, -1, 'WITHSCORES'), '\\0') end
          if t == 'hash' then
            local h = redis.call('HGETALL', k)
            local p = {}
            for i = 1, #h, 2 do p[#p + 1] = h[i] .. '\\1' .. h[i + 1] end
            table.sort(p)
            return t .. ':' .. table.concat(p, '\\0')
          end
          if t == 'stream' then
            local p = {}
            for _, e in ipairs(redis.call('XRANGE', k, '-', '+')) do p[#p + 1] = e[1] .. '\\1' .. table.concat(e[2], '\\1') end
            return t .. ':' .. table.concat(p, '\\0')
          end
          return t .. ':' .. redis.call('DUMP', k)
        end
        local out = {}
        local t = redis.call('TIME')
        local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
        for db = 0, tonumber(ARGV[1]) do
          redis.call('SELECT', db)
          local cursor = '0'
          repeat
            local r = redis.call('SCAN', cursor, 'COUNT', 1000)
            cursor = r[1]
            for _, k in ipairs(r[2]) do
              local ttl = redis.call('PTTL', k)
              if ttl > 0 then ttl = now + ttl end
              out[#out + 1] = db .. ' ' .. k .. ' ' .. redis.sha1hex(content(k)) .. ' ' .. ttl
            end
          until cursor == '0'
        end
        return out
        """

    static func seedRedis(_ node: String) throws {
        try redis(node, ["FLUSHALL"])
        try redis(node, ["EVAL", seedScript, "0", "3000", ""])
        try redis(node, ["-n", "2", "EVAL", seedScript, "0", "50", "db2:"])
        try redis(node, ["EVAL", "return redis.call('SET', 'big', string.rep('0123456789abcdef', 65536))", "0"])
    }

    static func seedRedisCluster(_ nodes: [String]) throws {
        for n in nodes { try redis(n, ["FLUSHALL"]) }
        // Keys spread over every master: each master gets keys of its own slots. Every value
        // type the restore's RDB reader skips over (lists, sets as intset and as hash table,
        // sorted sets, hashes, a stream with a consumer group), expiries, and one value
        // larger than the reader's 4 MiB window and the 1 MiB batch of RESTOREs.
        for i in 0..<80 {
            switch i % 8 {
            case 0: try redis(nodes[0], ["SET", "session:\(i)", "user \(i)"], cluster: true)
            case 1: try redis(nodes[0], ["HSET", "cart:\(i)", "item", "\(i)", "qty", "2"], cluster: true)
            case 2: try redis(nodes[0], ["SET", "token:\(i)", "t", "EX", "\(4000 + i)"], cluster: true)
            case 3: try redis(nodes[0], ["ZADD", "rank:\(i)", "1", "a", "2", "b"], cluster: true)
            case 4: try redis(nodes[0], ["RPUSH", "queue:\(i)", "a", "b", "\(i)"], cluster: true)
            case 5: try redis(nodes[0], ["SADD", "ids:\(i)", "1", "2", "\(i + 100)"], cluster: true)
            case 6: try redis(nodes[0], ["SADD", "tags:\(i)", "red", "blue", "t\(i)"], cluster: true)
            default:
                try redis(nodes[0], ["XADD", "events:\(i)", "1-1", "f", "v"], cluster: true)
                try redis(nodes[0], ["XGROUP", "CREATE", "events:\(i)", "readers", "0"], cluster: true)
            }
        }
        let big = """
            local t = {}
            for i = 1, 300000 do t[i] = string.format('%08x%08x', math.random(0, 2147483647), i) end
            redis.call('SET', KEYS[1], table.concat(t))
            return 1
            """
        try redis(nodes[0], ["EVAL", big, "1", "blob:large"], cluster: true)
    }

    /// Per key: the value's SHA-1 and the absolute expiry in ms (-1: none).
    static func redisFingerprint(_ nodes: [String], maxDB: Int = 15) throws -> [String: (String, Int64)] {
        var out: [String: (String, Int64)] = [:]
        for n in nodes {
            for line in try redis(n, ["EVAL", fingerprintScript, "0", String(maxDB)]).split(separator: "\n") {
                let p = line.split(separator: " ")
                guard p.count == 4 else { continue }
                out["\(p[0]) \(p[1])"] = (String(p[2]), Int64(p[3]) ?? -3)
            }
        }
        return out
    }

    /// Same keys, same values, expiry times within a second.
    static func sameRedisData(_ a: [String: (String, Int64)], _ b: [String: (String, Int64)]) -> Bool {
        guard a.count == b.count else { return false }
        for (k, (sha, ttl)) in a {
            guard let (sha2, ttl2) = b[k], sha == sha2 else { return false }
            if (ttl < 0) != (ttl2 < 0) || abs(ttl - ttl2) > 1000 { return false }
        }
        return true
    }

    /// Polls `check` until it holds or `seconds` pass (replicas catching up).
    static func eventually(seconds: Double = 20, _ check: () throws -> Bool) throws -> Bool {
        let end = Date().addingTimeInterval(seconds)
        while Date() < end {
            if try check() { return true }
            usleep(200_000)
        }
        return try check()
    }
}
