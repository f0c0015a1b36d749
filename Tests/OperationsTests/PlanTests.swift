import Fleet
// Backup and restore plans from recorded topologies (fixtures/probes/): where a dump runs,
// where a restore goes, what is refused and what is warned about. No server involved.
import Repository
import Support
import TestSupport
import Testing
import Topology

@testable import Operations
@testable import Storage

private func topology(_ fixture: String, master: String? = nil, maxLag: Double = 60) throws -> LayerTopology {
    var obs = try Fixtures.observation(fixture)
    if let master { for i in obs.nodes.indices { obs.nodes[i].masterNode = obs.nodes[i].name == master } }
    return TopologyAnalysis.analyze(obs, settings: AnalysisSettings(maxLagSeconds: maxLag))
}

private func manifest(engine: String, version: String? = nil, streams: Int = 1) -> Manifest {
    Manifest(
        format: 1, environment: "shop", layer: "x", name: "2026-11-21T030000Z-manual", engine: engine, engineVersion: version,
        sourceNode: "n", sourceRole: "primary", topology: nil, started: "", finished: "",
        streams: (0..<streams).map { ManifestStream(name: "s\($0)", rawBytes: 0, storedBytes: 0, sha256: "", chunks: []) },
        rawBytes: 0, storedBytes: 0, newBytes: 0)
}

private func status<T>(_ body: () throws(StowageError) -> T) -> Support.ExitStatus? {
    do { _ = try body(); return nil } catch { return error.status }
}

@Suite struct BackupPlans {
    @Test func dumpsThePrimaryOfEveryEngine() throws {
        for (f, primary) in [("healthy/shop-sqldb.json", "pg1"), ("healthy/shop-mariadb.json", "my1"), ("healthy/shop-cache.json", "rd1")] {
            let p = try Plans.backup(try topology(f), from: .primary)
            #expect(p.streams.map(\.node) == [primary])
            #expect(p.streams[0].role == .primary)
            #expect(p.notes.isEmpty)
            #expect(!p.fromReplica)
        }
    }

    @Test func masterNodeReplicaDumpsTheRealPrimaryAndSaysSo() throws {
        let p = try Plans.backup(try topology("healthy/shop-sqldb.json", master: "pg2"), from: .primary)
        #expect(p.streams.map(\.node) == ["pg1"])
        #expect(p.notes.contains { $0.contains("master node pg2 is a replica") && $0.contains("pg1") })
    }

    @Test func fromReplicaPicksAStreamingReplica() throws {
        let p = try Plans.backup(try topology("healthy/shop-mariadb.json"), from: .replica)
        #expect(p.streams.map(\.node) == ["my2"])
        #expect(p.fromReplica)
    }

    @Test func fromReplicaRefusedWhenNoneQualifies() throws {
        // Replication stopped on my2: not a source.
        #expect(status { () throws(StowageError) in try Plans.backup(try! topology("my-stopped/shop-mariadb.json"), from: .replica) } == .unsafeTopology)
        // A lag limit below the replica's lag.
        let lagging = try topology("recorded-elsewhere/mysql8-lagging.json", maxLag: 1)
        #expect(status { () throws(StowageError) in try Plans.backup(lagging, from: .replica) } == .unsafeTopology)
    }

    @Test func splitBrainAndUnassignedSlotsRefused() throws {
        let split = try topology("pg-promoted/shop-sqldb.json")
        #expect(status { () throws(StowageError) in try Plans.backup(split, from: .primary) } == .unsafeTopology)
        let slots = try topology("rc-slots-unassigned/shop-sessions.json")
        #expect(status { () throws(StowageError) in try Plans.backup(slots, from: .primary) } == .unsafeTopology)
    }

    @Test func redisClusterDumpsEveryMasterWithItsSlots() throws {
        let p = try Plans.backup(try topology("healthy/shop-sessions.json"), from: .primary)
        #expect(p.streams.map(\.node).sorted() == ["rc1", "rc2", "rc3"])
        #expect(p.streams.allSatisfy { $0.slots != nil && $0.role == .clusterMaster })
    }

    @Test func nonClusteredLayerNotesThatOnlyTheMasterNodeIsDumped() throws {
        let p = try Plans.backup(try topology("healthy/staging-sqldb.json"), from: .primary)
        #expect(p.streams.map(\.node) == ["pg3"])
        #expect(p.notes.contains { $0.contains("non-clustered") && $0.contains("pg4") })
    }
}

@Suite struct RestorePlans {
    @Test func restoresThePrimary() throws {
        let p = try Plans.restore(
            try topology("healthy/shop-sqldb.json"), manifest: manifest(engine: "postgresql", version: "PostgreSQL 15.20"),
            node: nil, allNodes: false)
        #expect(p.targets.map(\.node) == ["pg1"])
        #expect(p.warnings.isEmpty)
    }

    @Test func aReplicaIsRefused() throws {
        let t = try topology("healthy/shop-sqldb.json")
        #expect(
            status { () throws(StowageError) in try Plans.restore(t, manifest: manifest(engine: "postgresql"), node: "pg2", allNodes: false) }
                == .unsafeTopology)
        let r = try topology("healthy/shop-cache.json")
        #expect(
            status { () throws(StowageError) in try Plans.restore(r, manifest: manifest(engine: "redis"), node: "rd2", allNodes: false) } == .unsafeTopology)
    }

    @Test func masterNodeReplicaRestoresThePrimaryWithAWarning() throws {
        let p = try Plans.restore(try topology("healthy/shop-mariadb.json", master: "my2"), manifest: manifest(engine: "mysql"), node: nil, allNodes: false)
        #expect(p.targets.map(\.node) == ["my1"])
        #expect(p.warnings.contains { $0.contains("master node my2 is a replica") })
    }

    @Test func splitBrainRefused() throws {
        let t = try topology("pg-promoted/shop-sqldb.json")
        #expect(
            status { () throws(StowageError) in try Plans.restore(t, manifest: manifest(engine: "postgresql"), node: nil, allNodes: false) } == .unsafeTopology)
    }

    @Test func nonClusteredWarnsOrRestoresEveryNode() throws {
        let t = try topology("healthy/staging-sqldb.json")
        let one = try Plans.restore(t, manifest: manifest(engine: "postgresql"), node: nil, allNodes: false)
        #expect(one.targets.map(\.node) == ["pg3"])
        #expect(one.warnings.contains { $0.contains("only the master node pg3") && $0.contains("--all-nodes") })
        let all = try Plans.restore(t, manifest: manifest(engine: "postgresql"), node: nil, allNodes: true)
        #expect(all.targets.map(\.node) == ["pg3", "pg4"])
    }

    @Test func otherEngineAndNewerMajorVersionRefused() throws {
        let t = try topology("healthy/shop-sqldb.json")
        #expect(
            status { () throws(StowageError) in try Plans.restore(t, manifest: manifest(engine: "redis"), node: nil, allNodes: false) } == .incompatibleBackup)
        #expect(
            status { () throws(StowageError) in
                try Plans.restore(t, manifest: manifest(engine: "postgresql", version: "PostgreSQL 16.4"), node: nil, allNodes: false)
            } == .incompatibleBackup)
        // An older major version restores into a newer server.
        #expect(
            status { () throws(StowageError) in
                try Plans.restore(t, manifest: manifest(engine: "postgresql", version: "PostgreSQL 14.9"), node: nil, allNodes: false)
            } == nil)
    }

    @Test func majorVersions() {
        #expect(Plans.majorVersion("PostgreSQL 15.20", engine: .postgresql) == [15])
        #expect(Plans.majorVersion("9.6.24", engine: .postgresql) == [9, 6])
        #expect(Plans.majorVersion("10.11.19-MariaDB-0+deb12u1-log", engine: .mysql) == [10, 11])
        #expect(Plans.majorVersion("8.0.36", engine: .mysql) == [8, 0])
        #expect(Plans.majorVersion("7.0.15", engine: .redis) == [7, 0])
        #expect(Plans.majorVersion("unknown", engine: .redis) == nil)
    }

    @Test func clusterRestoreGoesToEveryCurrentMaster() throws {
        let p = try Plans.restore(try topology("healthy/shop-sessions.json"), manifest: manifest(engine: "redis", streams: 3), node: nil, allNodes: false)
        #expect(p.targets.map(\.node).sorted() == ["rc1", "rc2", "rc3"])
        #expect(p.warnings.isEmpty)
        #expect(p.notes.contains { $0.contains("routed by slot") })
    }
}
