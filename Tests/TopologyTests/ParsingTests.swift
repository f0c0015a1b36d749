import Engines
import Testing

@testable import Topology

@Suite struct RedisTextParsing {
    @Test func infoWithCRLFLines() {
        // Swift treats "\r\n" as one Character: splitting on "\n" would find a single line.
        let info = RESP.infoFields("# Replication\r\nrole:slave\r\nmaster_host:10.0.0.1\r\nmaster_port:6380\r\n\r\n")
        #expect(info == ["role": "slave", "master_host": "10.0.0.1", "master_port": "6380"])
    }

    @Test func slaveLineFields() {
        let kv = parseRedisKeyValueList("ip=127.0.3.11,port=6379,state=online,offset=1234,lag=1")
        #expect(kv["ip"] == "127.0.3.11")
        #expect(kv["offset"] == "1234")
    }

    @Test func replicaLagInBytesFromTheMastersOffsets() throws {
        let raw = RawProbe(replies: [
            "role": "master",
            "info replication":
                "role:master\r\nconnected_slaves:1\r\nslave0:ip=10.0.0.2,port=6379,state=online,offset=900,lag=2\r\nmaster_repl_offset:1000\r\n",
        ])
        let f = try redisFacts(raw)
        #expect(f.downstream == [DownstreamReplica(name: nil, endpoint: Endpoint(host: "10.0.0.2", port: 6379), state: "online", lagSeconds: 2, lagBytes: 100)])
    }

    @Test func clusterNodesWithReplicasHostnamesAndMigratingSlots() throws {
        let text = """
            07c37dfeb235213a872192d90877d0cd55635b91 127.0.0.1:30004@31004,host-4 slave e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 0 1426238317239 4 connected
            67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1 127.0.0.1:30002@31002 master - 0 1426238316232 2 connected 5461-10922
            e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 127.0.0.1:30001@31001 myself,master - 0 0 1 connected 0-5460 [5461->-67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1]
            6ec23923021cf3ffec47632106199cb7f496ce01 [::1]:30005@31005 slave,fail 67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1 0 1426238316232 5 disconnected
            """
        let nodes = try parseClusterNodes(text)
        #expect(nodes.count == 4)
        #expect(nodes[0].endpoint == Endpoint(host: "127.0.0.1", port: 30004))
        #expect(nodes[0].masterID == "e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca")
        #expect(nodes[2].isMyself && nodes[2].isMaster)
        #expect(nodes[2].slotRanges == ["0-5460"])
        #expect(nodes[2].slotCount == 5461)
        #expect(nodes[3].endpoint.host == "::1")
        #expect(nodes[3].failing)
    }

    @Test func malformedClusterNodesLineIsAnError() {
        #expect(throws: RedisParseError.self) { try parseClusterNodes("abc 127.0.0.1:1@2 master") }
    }
}

@Suite struct SQLColumnFolding {
    @Test func mariadbAndMySQL8ColumnsMeanTheSame() {
        let maria = MySQLReplicaChannel(row: [
            "Master_Host": "10.0.0.1", "Master_Port": "3307", "Slave_IO_Running": "Yes",
            "Slave_SQL_Running": "No", "Seconds_Behind_Master": "12", "Last_SQL_Error": "dup key",
        ])
        let mysql = MySQLReplicaChannel(row: [
            "Source_Host": "10.0.0.1", "Source_Port": "3307", "Replica_IO_Running": "Yes",
            "Replica_SQL_Running": "No", "Seconds_Behind_Source": "12", "Last_SQL_Error": "dup key",
        ])
        #expect(maria == mysql)
        #expect(maria.sourcePort == 3307)
        #expect(maria.secondsBehind == 12)
    }

    @Test func replicaWithoutAWalReceiverIsBroken() throws {
        let raw = RawProbe(results: [
            "server": [["server_version": "15.4", "in_recovery": "true", "system_identifier": "1", "timeline": "3"]],
            "replication": [], "wal_receiver": [],
        ])
        let f = try postgresFacts(raw)
        #expect(!f.writable)
        #expect(f.upstream == nil)
        #expect(f.linkProblem?.contains("no WAL receiver") == true)
        #expect(f.timeline == 3)
    }

    @Test func missingAnswersAreAnErrorNotACrash() {
        #expect(throws: FactsError.self) { try postgresFacts(RawProbe()) }
        #expect(throws: FactsError.self) { try mysqlFacts(RawProbe()) }
        #expect(throws: FactsError.self) { try redisFacts(RawProbe()) }
    }
}

/// libpq's connection errors sorted the way the analysis reports them.
@Test func postgresConnectionErrorsAreClassified() {
    #expect(PostgresConnection.classify("FATAL:  password authentication failed for user \"app\"").kind == .authenticationFailed)
    #expect(PostgresConnection.classify("FATAL:  role \"app\" does not exist").kind == .authenticationFailed)
    // A replica replaying a restore that drops and recreates the database the probe uses.
    #expect(PostgresConnection.classify("FATAL:  database \"postgres\" does not exist").kind == .queryFailed)
    #expect(PostgresConnection.classify("could not connect: Connection refused").kind == .unreachable)
    #expect(PostgresConnection.classify("timeout expired").kind == .timeout)
}
