// The engines' pure parts: dump counting, the PostgreSQL restore filter, credential files,
// tool arguments, RESP and Redis Cluster slots. Every streaming piece is fed the same input
// in one buffer and in many small ones (a buffer boundary can fall anywhere in a line).
import Engines
import Testing

private func feedAll<S>(_ text: String, pieces: Int, into state: inout S, _ feed: (inout S, UnsafeRawBufferPointer) -> Void) {
    let bytes = Array(text.utf8)
    let step = max(1, bytes.count / pieces)
    var i = 0
    while i < bytes.count {
        let j = min(bytes.count, i + step)
        bytes[i..<j].withUnsafeBytes { feed(&state, $0) }
        i = j
    }
}

private let pgDump = """
    --
    -- PostgreSQL database cluster dump
    --
    \\restrict abc
    DROP ROLE IF EXISTS app;
    DROP ROLE IF EXISTS webadmin;
    CREATE ROLE app;
    CREATE ROLE webadmin;
    ALTER ROLE webadmin WITH SUPERUSER LOGIN PASSWORD 'SCRAM-SHA-256$x';
    \\unrestrict abc
    \\connect template1
    \\connect -reuse-previous=on "dbname='shop''s data'"
    COPY public.items (id, name) FROM stdin;
    1\tapple
    2\tCOPY public.fake (x) FROM stdin;
    3\t\\\\.
    \\.
    COPY public.empty (id) FROM stdin;
    \\.
    \\connect crm
    COPY public.people (id) FROM stdin;
    7
    \\.

    """

@Suite struct DumpCountTests {
    @Test(arguments: [1, 7, 50, 1000])
    func postgresRowsPerDatabase(pieces: Int) {
        var c = PostgresDumpCounter()
        feedAll(pgDump, pieces: pieces, into: &c) { $0.feed($1) }
        #expect(c.finish() == ["template1": 0, "shop's data": 3, "crm": 1])
    }

    @Test(arguments: [1, 3, 4097, 100_000])
    func aRowLongerThanTheKeptHeadIsOneRow(pieces: Int) {
        let long = String(repeating: "x", count: 10_000)
        let dump = "\\connect big\nCOPY public.t (v) FROM stdin;\n\(long)\n1\n\(long)\\.\n\\.\nSELECT 1;\n"
        var c = PostgresDumpCounter()
        feedAll(dump, pieces: pieces, into: &c) { $0.feed($1) }
        #expect(c.finish() == ["big": 3])
    }

    @Test func connectTargets() {
        #expect(PostgresDumpCounter.connectTarget("\\connect shop") == "shop")
        #expect(PostgresDumpCounter.connectTarget("\\connect \"Shop\"") == "Shop")
        #expect(PostgresDumpCounter.connectTarget("\\connect -reuse-previous=on \"dbname='a''b'\"") == "a'b")
    }

    @Test(arguments: [1, 5, 33, 1000])
    func mysqlRowsPerDatabase(pieces: Int) {
        let dump = """
            CREATE DATABASE `shop`;
            USE `shop`;
            INSERT INTO `items` VALUES (1,'a(b'),(2,'it\\'s ),(x'),(3,NULL);
            INSERT INTO `we(ird` VALUES (4,"q\\"(");
            USE `mysql`;
            INSERT INTO `global_priv` VALUES ('localhost','root','{}');
            USE `crm`;
            INSERT INTO `t` VALUES (1),(2);
            INSERT INTO `t` VALUES
            (3,'x;y'),
            (4,'(');
            INSERT INTO `t` VALUES (5,'ends in a backslash\\\\'),(6,'\\\\\\'('),(7,'``'),(8,`)`);
            USE `empty`;

            """
        var c = MySQLDumpCounter()
        feedAll(dump, pieces: pieces, into: &c) { $0.feed($1) }
        #expect(c.finish() == ["shop": 4, "crm": 8, "empty": 0])
    }
}

@Suite struct RestoreFilterTests {
    @Test(arguments: [1, 3, 17, 1000])
    func dropsOnlyTheKeptRolesLines(pieces: Int) {
        var f = PostgresRestoreFilter(keepRoles: ["webadmin", "postgres"])
        var out: [UInt8] = []
        feedAll(pgDump, pieces: pieces, into: &f) { f, b in f.feed(b) { out += $0 } }
        f.finish { out += $0 }
        let expected = pgDump.replacing("DROP ROLE IF EXISTS webadmin;\n", with: "").replacing("CREATE ROLE webadmin;\n", with: "")
        #expect(String(decoding: out, as: UTF8.self) == expected)
    }

    @Test func lineWithoutNewlineAtTheEnd() {
        var f = PostgresRestoreFilter(keepRoles: ["webadmin"])
        var out: [UInt8] = []
        Array("SELECT 1;\nCREATE ROLE webadmin;\nCREATE ROLE webadmin2;".utf8).withUnsafeBytes { f.feed($0) { out += $0 } }
        f.finish { out += $0 }
        #expect(String(decoding: out, as: UTF8.self) == "SELECT 1;\nCREATE ROLE webadmin2;")
    }

    @Test func quotedRoleNames() {
        #expect(PostgresRestoreFilter.quoteIdent("webadmin") == "webadmin")
        #expect(PostgresRestoreFilter.quoteIdent("Web Admin") == "\"Web Admin\"")
        #expect(PostgresRestoreFilter.quoteIdent("a\"b") == "\"a\"\"b\"")
    }
}

/// A `mariadb-dump --all-databases --routines` script as MariaDB 10.11 writes it: `mysql`
/// before `shop`, whose routine section drops and re-creates the procedure.
private let myDump = """
    USE `app`;
    INSERT INTO `procs_priv` VALUES (1,'not the system table');
    USE `mysql`;
    DROP TABLE IF EXISTS `procs_priv`;
    LOCK TABLES `procs_priv` WRITE;
    /*!40000 ALTER TABLE `procs_priv` DISABLE KEYS */;
    INSERT INTO `procs_priv` VALUES
    ('%','shop','reporter','add_order','PROCEDURE','root@localhost','Execute','0000-00-00 00:00:00'),
    ('%','shop','auditor','add_order','PROCEDURE','root@localhost','Execute,Alter Routine','0000-00-00 00:00:00');
    /*!40000 ALTER TABLE `procs_priv` ENABLE KEYS */;
    UNLOCK TABLES;
    INSERT INTO `tables_priv` VALUES ('%','shop','reporter','orders','root@localhost','0000-00-00 00:00:00','Select','');
    /*! FLUSH PRIVILEGES */;
    USE `shop`;
    /*!50003 DROP PROCEDURE IF EXISTS `add_order` */;
    CREATE DEFINER=`root`@`localhost` PROCEDURE `add_order`()
    SELECT 1 ;;
    USE `mysql`;
    /*!40103 SET TIME_ZONE=@OLD_TIME_ZONE */;

    """

@Suite struct MySQLRestoreFilterTests {
    @Test(arguments: [1, 2, 5, 39, 40, 41, 4096])
    func procsPrivRowsGoLastAsReplace(pieces: Int) {
        var f = MySQLRestoreFilter()
        var out: [UInt8] = []
        feedAll(myDump, pieces: pieces, into: &f) { f, b in f.feed(b) { out += $0 } }
        f.finish { out += $0 }
        let rows = """
            REPLACE INTO `mysql`.`procs_priv` VALUES
            ('%','shop','reporter','add_order','PROCEDURE','root@localhost','Execute','0000-00-00 00:00:00'),
            ('%','shop','auditor','add_order','PROCEDURE','root@localhost','Execute,Alter Routine','0000-00-00 00:00:00');

            """
        let held = "INSERT INTO `procs_priv` VALUES\n" + rows.split(separator: "\n").dropFirst().joined(separator: "\n") + "\n"
        let expected = myDump.replacing(held, with: "") + "\n" + rows + "FLUSH PRIVILEGES;\n"
        #expect(String(decoding: out, as: UTF8.self) == expected)
    }

    @Test func otherDatabasesTablesOfTheSameNamePass() {
        var f = MySQLRestoreFilter()
        var out: [UInt8] = []
        let script = "USE `app`;\nINSERT INTO `procs_priv` VALUES (1);\nUSE `mysqlx`;\nINSERT INTO `procs_priv` VALUES (2);\n"
        Array(script.utf8).withUnsafeBytes { f.feed($0) { out += $0 } }
        f.finish { out += $0 }
        #expect(String(decoding: out, as: UTF8.self) == script)
    }

    @Test func oneLineInsertAndNoTrailingNewline() {
        var f = MySQLRestoreFilter()
        var out: [UInt8] = []
        let script = "USE `mysql`;\nINSERT INTO `procs_priv` VALUES ('%','a','b','c','PROCEDURE','g','Execute','t');\nSELECT 1;"
        Array(script.utf8).withUnsafeBytes { f.feed($0) { out += $0 } }
        f.finish { out += $0 }
        #expect(
            String(decoding: out, as: UTF8.self)
                == "USE `mysql`;\nSELECT 1;\nREPLACE INTO `mysql`.`procs_priv` VALUES ('%','a','b','c','PROCEDURE','g','Execute','t');\nFLUSH PRIVILEGES;\n")
    }
}

@Suite struct CredentialFileTests {
    @Test func pgpassEscapesColonsAndBackslashes() throws {
        #expect(try CredentialFiles.pgpass(password: "a:b\\c") == "*:*:*:*:a\\:b\\\\c\n")
        #expect(throws: CredentialFiles.Problem.newline) { try CredentialFiles.pgpass(password: "a\nb") }
    }

    @Test func mysqlOptionFileQuotes() throws {
        #expect(try CredentialFiles.mysqlOptions(user: "web", password: "p#w\\d") == "[client]\nuser=\"web\"\npassword=\"p#w\\\\d\"\n")
        #expect(try CredentialFiles.mysqlOptions(user: nil, password: "say \"hi\"") == "[client]\npassword='say \"hi\"'\n")
    }

    @Test func secretsNeverInToolArguments() {
        let pg = ToolCommands.pgDumpall(host: "10.0.0.1", port: 5432, user: "web", passfile: "/run/x/pgpass")
        #expect(pg.contains("--clean") && pg.contains("--if-exists"))
        #expect(pg[1].contains("passfile='/run/x/pgpass'") && !pg[1].contains("password"))
        let my = ToolCommands.mysqlDump(program: "mariadb-dump", optionsFile: "/run/x/client.cnf", host: "h", port: 3306, fromReplica: true)
        #expect(my[1] == "--defaults-extra-file=/run/x/client.cnf")
        #expect(my.contains("--single-transaction") && my.contains("--flush-privileges") && my.contains("--dump-slave=2"))
        #expect(!ToolCommands.mysqlDump(program: "mysqldump", optionsFile: "f", host: "h", port: 1, fromReplica: false).contains("--dump-slave=2"))
        #expect(ToolCommands.conninfo([("host", "it's")]) == "host='it\\'s'")
    }
}

@Suite struct RedisWireTests {
    @Test func commandEncoding() {
        #expect(RESP.command("SET", "k", "v") == Array("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n".utf8))
    }

    @Test func parsesRepliesAndWaitsForMore() throws {
        let full = Array("*3\r\n+OK\r\n:42\r\n$5\r\nhe\r\no\r\n-ERR x\r\n".utf8)
        let (v, end) = try full.withUnsafeBytes { try RESP.parse($0, from: 0) }!
        #expect(v == .array([.simple("OK"), .integer(42), .bulk(Array("he\r\no".utf8))]))
        let (e, _) = try full.withUnsafeBytes { try RESP.parse($0, from: end) }!
        #expect(e == .error("ERR x"))
        for cut in 1..<(end - 1) {
            #expect(try full[0..<cut].withUnsafeBytes { try RESP.parse($0, from: 0) } == nil)
        }
        #expect(try Array("$-1\r\n".utf8).withUnsafeBytes { try RESP.parse($0, from: 0) }?.0 == .bulk(nil))
    }

    @Test func keyspaceFromInfo() {
        #expect(RESP.keyspace("# Keyspace\r\ndb0:keys=12,expires=1,avg_ttl=0\r\ndb3:keys=1,expires=0,avg_ttl=0\r\n") == ["db0": 12, "db3": 1])
    }

    @Test func clusterSlots() {
        // Values from the Redis Cluster specification.
        #expect(RedisCluster.slot(Array("123456789".utf8)) == 0x31C3 & 16383)
        #expect(RedisCluster.slot(Array("foo".utf8)) == 12182)
        #expect(RedisCluster.slot(Array("{user1000}.following".utf8)) == RedisCluster.slot(Array("user1000".utf8)))
        #expect(RedisCluster.slot(Array("foo{}{bar}".utf8)) == RedisCluster.slot(Array("foo{}{bar}".utf8)))
        #expect(RedisCluster.slot(Array("foo{}{bar}".utf8)) != RedisCluster.slot(Array("bar".utf8)))
    }
}

@Suite struct RedisMasterHandshakeTests {
    private func cmd(_ s: String...) -> [[UInt8]] { s.map { Array($0.utf8) } }
    private let id = String(repeating: "a", count: 40), mark = String(repeating: "7", count: 40)

    /// Redis 7's replica: PING, AUTH, REPLCONF listening-port, REPLCONF capa, PSYNC.
    @Test func aReplicaWithTheRightPasswordGetsAFullResyncInEOFFraming() {
        var h = RedisMasterHandshake(password: "s3cret", replicationID: id, mark: mark)
        #expect(h.answer(cmd("PING")) == .reply(Array("+PONG\r\n".utf8)))
        #expect(h.answer(cmd("AUTH", "s3cret")) == .reply(Array("+OK\r\n".utf8)))
        #expect(h.answer(cmd("REPLCONF", "listening-port", "6379")) == .reply(Array("+OK\r\n".utf8)))
        #expect(h.answer(cmd("REPLCONF", "capa", "psync2", "capa", "EOF")) == .reply(Array("+OK\r\n".utf8)))
        #expect(h.takesEOF)
        #expect(h.answer(cmd("PSYNC", "?", "-1")) == .start(Array("+FULLRESYNC \(id) 0\r\n$EOF:\(mark)\r\n".utf8)))
    }

    @Test func masteruserSendsTheUserFirst() {
        var h = RedisMasterHandshake(password: "pw", replicationID: id, mark: mark)
        #expect(h.answer(cmd("AUTH", "default", "pw")) == .reply(Array("+OK\r\n".utf8)))
        #expect(h.authenticated)
    }

    @Test func aWrongOrMissingPasswordIsRefusedAndNothingIsStreamed() {
        var wrong = RedisMasterHandshake(password: "pw", replicationID: id, mark: mark)
        guard case .refuse = wrong.answer(cmd("AUTH", "px")) else { Issue.record("a wrong password was accepted"); return }
        #expect(!wrong.authenticated)
        var none = RedisMasterHandshake(password: "pw", replicationID: id, mark: mark)
        guard case .refuse = none.answer(cmd("PSYNC", "?", "-1")) else { Issue.record("PSYNC without AUTH was answered"); return }
        guard case .refuse = none.answer(cmd("REPLCONF", "capa", "eof")) else { Issue.record("REPLCONF without AUTH was answered"); return }
    }

    @Test func aReplicaWithoutEOFCapabilityOrAnotherCommandIsRefused() {
        var h = RedisMasterHandshake(password: "pw", replicationID: id, mark: mark)
        _ = h.answer(cmd("AUTH", "pw"))
        _ = h.answer(cmd("REPLCONF", "capa", "psync2"))
        guard case .refuse = h.answer(cmd("PSYNC", "?", "-1")) else { Issue.record("PSYNC without capa eof was answered"); return }
        var k = RedisMasterHandshake(password: "pw", replicationID: id, mark: mark)
        _ = k.answer(cmd("AUTH", "pw"))
        guard case .refuse = k.answer(cmd("KEYS", "*")) else { Issue.record("KEYS was answered"); return }
        guard case .refuse = k.answer([]) else { Issue.record("an empty command was answered"); return }
    }
}
