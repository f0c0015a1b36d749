import TestSupport
// The analysis from recorded probe answers: no server involved. Recordings under
// fixtures/probes/ come from the lab (`stowage topology --record`) except
// recorded-elsewhere/, which holds MySQL 8 and Galera answers the lab does not run.
import Testing

@testable import Topology

private func analyze(_ fixture: String, maxLag: Double = 60, _ change: (inout LayerObservation) -> Void = { _ in }) throws -> LayerTopology {
    var obs = try Fixtures.observation(fixture)
    change(&obs)
    return TopologyAnalysis.analyze(obs, settings: AnalysisSettings(maxLagSeconds: maxLag))
}

@Suite struct HealthyLayers {
    @Test func postgresPrimaryAndStreamingReplica() throws {
        let t = try analyze("healthy/shop-sqldb.json")
        #expect(t.kind == .primarySecondary)
        #expect(t.primary == "pg1")
        #expect(t.node("pg1")?.role == .primary)
        #expect(t.node("pg2")?.role == .replica)
        #expect(t.node("pg2")?.upstream == "pg1")
        #expect(t.node("pg2")?.state == "streaming")
        #expect(t.node("pg2")?.lagBytes == 0)
        #expect(t.links == [ReplicationLink(from: "pg1", to: "pg2", state: "streaming", lagSeconds: t.node("pg2")?.lagSeconds, lagBytes: 0)])
        #expect(t.findings.isEmpty)
        #expect(t.status == .ok)
    }

    @Test func mariadbPrimaryAndGTIDReplica() throws {
        let t = try analyze("healthy/shop-mariadb.json")
        #expect(t.kind == .primarySecondary)
        #expect(t.primary == "my1")
        #expect(t.node("my2")?.role == .replica)
        #expect(t.node("my2")?.upstream == "my1")
        #expect(t.node("my2")?.state == "replicating")
        #expect(t.node("my2")?.detail?.contains("read-only") == true)
        #expect(t.findings.isEmpty)
    }

    @Test func redisMasterAndReplica() throws {
        let t = try analyze("healthy/shop-cache.json")
        #expect(t.kind == .primarySecondary)
        #expect(t.primary == "rd1")
        #expect(t.node("rd2")?.upstream == "rd1")
        #expect(t.node("rd2")?.lagBytes == 0)
        #expect(t.findings.isEmpty)
    }

    @Test func redisClusterMastersAndSlots() throws {
        let t = try analyze("healthy/shop-sessions.json")
        #expect(t.kind == .redisCluster)
        #expect(t.primary == nil)
        #expect(t.shards?.map(\.master) == ["rc1", "rc2", "rc3"])
        #expect(t.shards?.map(\.slots) == ["0-5460", "5461-10922", "10923-16383"])
        #expect(t.nodes.allSatisfy { $0.role == .clusterMaster })
        #expect(t.findings.isEmpty)
    }

    @Test func singleNodes() throws {
        for f in ["healthy/staging-mariadb.json", "healthy/staging-cache.json"] {
            let t = try analyze(f)
            #expect(t.kind == .singleNode, "\(f)")
            #expect(t.primary == t.masterNode, "\(f)")
            #expect(t.nodes.first?.role == .standalone, "\(f)")
            #expect(t.findings.isEmpty, "\(f)")
        }
    }
}

@Suite struct AddOnWarnings {
    @Test func nonClusteredMultiNodeLayerWarnsThatRestoreReachesOneNode() throws {
        let t = try analyze("healthy/staging-sqldb.json")
        #expect(t.kind == .nonClustered)
        #expect(t.primary == "pg3")
        #expect(t.nodes.allSatisfy { $0.role == .standalone })
        let f = try #require(t.findings(.nonClustered).first)
        #expect(f.severity == .warning)
        #expect(f.message.contains("master node pg3 only"))
        #expect(t.status == .warning)
    }

    @Test func masterNodeThatIsAReplicaNamesTheRealPrimary() throws {
        // The inventory lists pg2 first: the add-on would run on the replica.
        let t = try analyze("healthy/shop-sqldb.json") { obs in
            obs.nodes.reverse()
            for i in obs.nodes.indices { obs.nodes[i].masterNode = (obs.nodes[i].name == "pg2") }
        }
        #expect(t.primary == "pg1")
        #expect(t.masterNode == "pg2")
        let f = try #require(t.findings(.masterNotPrimary).first)
        #expect(f.severity == .warning)
        #expect(f.node == "pg2")
        #expect(f.message.contains("the primary is pg1"))
        #expect(t.status == .warning)
    }
}

@Suite struct UnsafeTopologies {
    @Test func promotedPostgresReplicaIsSplitBrainOnANewTimeline() throws {
        let t = try analyze("pg-promoted/shop-sqldb.json")
        #expect(t.kind == .primarySecondary)
        #expect(t.primary == nil)
        let f = try #require(t.findings(.splitBrain).first)
        #expect(f.severity == .error)
        #expect(f.message.contains("pg1, pg2"))
        #expect(f.message.contains("pg2 moved to timeline 2"))
        #expect(t.status == .error)
    }

    @Test func detachedRedisReplicaIsSplitBrainAndBrokenReplication() throws {
        let t = try analyze("rd-detached/shop-cache.json")
        #expect(t.primary == nil)
        #expect(t.findings(.splitBrain).count == 1)
        let broken = try #require(t.findings(.replicationBroken).first)
        #expect(broken.node == "rd2")
        #expect(broken.message.contains("REPLICAOF NO ONE"))
    }

    @Test func stoppedMariaDBReplicationIsAWarning() throws {
        let t = try analyze("my-stopped/shop-mariadb.json")
        #expect(t.primary == "my1")
        #expect(t.node("my2")?.state == "stopped")
        let f = try #require(t.findings(.replicationBroken).first)
        #expect(f.severity == .warning)
        #expect(f.message.contains("IO thread not running"))
        #expect(t.status == .warning)
    }

    @Test func nodesFromDifferentPostgresClustersAreMixed() throws {
        let other = try Fixtures.observation("healthy/staging-sqldb.json").nodes[0]
        let t = try analyze("healthy/shop-sqldb.json") { $0.nodes.append(other) }
        let f = try #require(t.findings(.mixedClusters).first)
        #expect(f.severity == .error)
        #expect(f.message.contains("{pg1, pg2}"))
        #expect(f.message.contains("{pg3}"))
        #expect(t.primary == nil)
    }

    @Test func redisClusterWithUnassignedSlots() throws {
        let t = try analyze("rc-slots-unassigned/shop-sessions.json")
        let f = try #require(t.findings(.slotsUnassigned).first)
        #expect(f.severity == .error)
        #expect(f.message.hasPrefix("384 of 16384"))
        #expect(t.findings(.clusterStateFail).count >= 1)
    }

    @Test func unreachablePrimaryLeavesNoPrimary() throws {
        let t = try analyze("healthy/shop-sqldb.json") { obs in
            obs.nodes[0].probe = nil
            obs.nodes[0].failure = ProbeFailure(.unreachable, "Connection refused")
        }
        #expect(t.node("pg1")?.role == .unreachable)
        #expect(t.findings(.nodeUnreachable).first?.node == "pg1")
        #expect(t.findings(.noPrimary).first?.severity == .error)
        #expect(t.primary == nil)
    }

    @Test func unreachableReplicaLeavesThePrimaryKnownAndWarns() throws {
        let t = try analyze("healthy/shop-mariadb.json") { obs in
            obs.nodes[1].probe = nil
            obs.nodes[1].failure = ProbeFailure(.timeout, "no answer within 5 s")
        }
        #expect(t.primary == "my1")
        #expect(t.kind == .unknown)
        #expect(t.node("my2")?.state == "timed out")
        #expect(t.status == .warning)
    }

    @Test func rejectedCredentialsAreAnError() throws {
        let t = try analyze("healthy/shop-cache.json") { obs in
            for i in obs.nodes.indices {
                obs.nodes[i].probe = nil
                obs.nodes[i].failure = ProbeFailure(.authenticationFailed, "WRONGPASS invalid username-password pair")
            }
        }
        #expect(t.findings(.credentialsRejected).count == 2)
        #expect(t.status == .error)
    }
}

@Suite struct MySQL8AndGalera {
    @Test func mysql8ReplicaColumnsAndLagOverTheLimit() throws {
        let t = try analyze("recorded-elsewhere/mysql8-lagging.json", maxLag: 60)
        #expect(t.primary == "db1")
        #expect(t.node("db2")?.upstream == "db1")
        #expect(t.node("db2")?.lagSeconds == 214)
        #expect(t.node("db1")?.version == "MySQL 8.0.36")
        let f = try #require(t.findings(.replicationLag).first)
        #expect(f.message.contains("3 min 34 s behind db1 (limit 60 s)"))
        // Under a larger limit the same lag is fine.
        #expect(try analyze("recorded-elsewhere/mysql8-lagging.json", maxLag: 300).findings.isEmpty)
    }

    @Test func mysql8IOThreadConnectingIsBroken() throws {
        let t = try analyze("recorded-elsewhere/mysql8-io-connecting.json")
        #expect(t.node("db2")?.state == "connecting")
        let f = try #require(t.findings(.replicationBroken).first)
        #expect(f.message.contains("Authentication requires secure connection"))
    }

    @Test func galeraClusterIsMultiPrimary() throws {
        let t = try analyze("recorded-elsewhere/galera-synced.json")
        #expect(t.kind == .multiPrimary)
        #expect(t.primary == "gal1")
        #expect(t.nodes.allSatisfy { $0.role == .galeraMember && $0.state == "Synced" })
        #expect(t.findings.isEmpty)
    }

    @Test func galeraPartitionIsAnError() throws {
        let t = try analyze("recorded-elsewhere/galera-partitioned.json")
        #expect(t.findings(.splitBrain).first?.node == "gal3")
        #expect(t.findings(.galeraNotSynced).contains { $0.node == "gal2" })
        #expect(t.findings(.galeraNotSynced).contains { $0.message.contains("2 members but the layer lists 3") })
        #expect(t.primary == "gal1")
        #expect(t.status == .error)
    }
}

@Suite struct CountSpreadTests {
    @Test func theLargestTablesGoFirstOntoTheLeastLoadedSession() {
        let tables: [(String, Int64)] = [("small", 10), ("accounts", 3_000_000), ("notes", 1_500_000), ("orders", 1_400_000), ("tiny", 0)]
        let lists = DataCounts.spread(tables, over: 2)
        #expect(lists.count == 2)
        // accounts alone outweighs the rest: the other session takes everything else.
        #expect(lists[0] == ["accounts"])
        #expect(lists[1] == ["notes", "orders", "small", "tiny"])
        // Every table counted once.
        #expect(lists.flatMap { $0 }.sorted() == tables.map(\.0).sorted())
    }

    @Test func moreSessionsThanTablesLeavesSomeEmptyAndNoneIsLost() {
        let lists = DataCounts.spread([("a", 5)], over: 3)
        #expect(lists.map(\.count).sorted() == [0, 0, 1])
        #expect(DataCounts.spread([("a", 5)], over: 0).isEmpty)
    }
}
