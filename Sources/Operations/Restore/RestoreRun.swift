// `stowage restore ENV/LAYER --from ENV2[/LAYER2] --backup NAME`: the plan from the target's
// topology and the backup's manifest (Plans.restore), then the restore itself: sealed chunks
// read from the storage (verified, another node's copy on a bad one) and sent to the target
// node's agent, which decrypts and applies them; last, the restored data is counted and
// compared with what the backup recorded.
import AgentProtocol
import Fleet
import Foundation
import Remote
import Repository
import Storage
import Support
import Topology

package struct RestorePreview: Sendable {
    package var layer: LayerSpec
    package var sourceEnvironment: String
    package var sourceLayer: String
    package var manifest: Manifest
    package var plan: RestorePlan
    package var topology: LayerTopology
    /// The storage node whose manifest copy the restore uses, and the copies found bad
    /// (every node's copy is read and authenticated).
    package var manifestSource: String
    package var manifestBadCopies: [BadCopy]
    /// The repository the backup is read from.
    var repo: OpenRepository
}

package struct CountCheck: Sendable, Equatable, Codable {
    package var database: String
    package var expected: Int64
    package var found: Int64?
    package var ok: Bool { found == expected }
}

package struct RestoreOutcome: Sendable {
    package var preview: RestorePreview
    package var checks: [CountCheck]
    /// Databases on the target that the backup does not contain: left as they were.
    package var untouched: [String]
    package var badCopies: [BadCopy]
    /// What the target nodes' agents said of how they applied the backup ("rd1: redis ...
    /// loads the backup from the replication socket ...").
    package var notes: [String] = []
    package var seconds: Double
    package var checkPassed: Bool { checks.allSatisfy(\.ok) }
}

/// One stream applied: the bad copies its fetch met, and what the target's agent said.
package struct StreamApplied: Sendable {
    package var bad: [BadCopy]
    package var notes: [String]
}

package enum RestoreRun {
    /// Everything a restore decides before it changes anything (what `--dry-run` prints).
    package static func prepare(
        inventory: Inventory, layer: LayerSpec, storage spec: StorageSpec, agent: AgentBinary,
        fromEnvironment: String, fromLayer: String, backup: String,
        node: String?, allNodes: Bool
    ) async throws(StowageError) -> RestorePreview {
        let topology = try await Trace.span("topology check of \(layer.id)") { () async throws(StowageError) in
            try await TopologyCheck.run([layer], settings: inventory.probe)[0]
        }
        let password = try spec.resolvePassword()
        let storage = try ReplicatedStorage(spec, inventory: inventory, agent: agent, environment: fromEnvironment)
        // Connected while the key is derived and the manifest read: a lock session and a
        // reader per storage node, and the layer's nodes (the restore's targets among them).
        storage.prewarm(connections: 2)
        SSHConnectionPool.shared.prewarm(layer.nodes.compactMap { try? inventory.sshTarget($0) }, count: 1)
        let opened = try await Trace.span("repository open") { () async throws(StowageError) in
            try await RepositoryAccess.openIfPresent(storage, environment: fromEnvironment, password: password)
        }
        guard let repo = opened else {
            throw StowageError(
                .usage, "storage \(spec.name) holds no backups of environment \(fromEnvironment)",
                hint: "stowage backups lists the environments there are")
        }
        let name = try await resolveName(repo, layer: fromLayer, backup: backup)
        let read = try await BackupReader.manifestWithSource(repo, layer: fromLayer, name: name, allCopies: true).get()
        let manifest = read.manifest
        let plan = try Plans.restore(topology, manifest: manifest, node: node, allNodes: allNodes)
        return RestorePreview(
            layer: layer, sourceEnvironment: fromEnvironment, sourceLayer: fromLayer, manifest: manifest,
            plan: plan, topology: topology, manifestSource: read.source, manifestBadCopies: read.bad, repo: repo)
    }

    static func resolveName(_ repo: OpenRepository, layer: String, backup: String) async throws(StowageError) -> BackupName {
        if backup != "latest" {
            guard let n = BackupName(backup) else {
                throw StowageError(
                    .usage, "'\(backup)' is not a backup name (like 2026-11-21T030000Z-manual)",
                    hint: "stowage backups \(repo.environment)/\(layer) lists them; or use --backup latest")
            }
            return n
        }
        var names = Set<BackupName>()
        var reached = 0
        for node in repo.storage.nodes {
            guard let listed = try? await node.list(prefix: "\(RepositoryLayout.backupsPrefix)/\(layer)") else { continue }
            reached += 1
            for o in listed { if let n = BackupName(String(o.name.split(separator: "/").last ?? "")) { names.insert(n) } }
        }
        guard reached > 0 else {
            throw StowageError(.nodeUnreachable, "no node of storage \(repo.storage.name) answered", retryable: true)
        }
        guard let latest = names.max() else {
            throw StowageError(
                .usage, "no backup of \(repo.environment)/\(layer) on storage \(repo.storage.name)",
                hint: "stowage backup \(repo.environment)/\(layer) makes one")
        }
        return latest
    }

    package static func execute(
        _ p: RestorePreview, inventory: Inventory, storage spec: StorageSpec, agent: AgentBinary,
        jobs: Int? = nil, progress: (@Sendable (Int64) -> Void)? = nil
    ) async throws(StowageError) -> RestoreOutcome {
        let started = Date()
        let layer = p.layer
        let dbPassword = try layer.credentials?.resolvePassword(layer: layer.id)

        // One restore or backup per layer at a time: the target layer's lock in its own
        // environment's repository (when the storage has one), and the source repository's
        // shared lock, which keeps prune from deleting chunks this restore is reading.
        var locks: [LayerLock] = []
        func releaseAll() async { await LayerLock.release(locks) }
        do throws(StowageError) {
            if p.sourceEnvironment == layer.environment {
                locks += try await lockReachable(p.repo.storage, layer: layer.name, operation: "restore \(layer.id)")
            } else {
                let password = try spec.resolvePassword()
                let own = try ReplicatedStorage(spec, inventory: inventory, agent: agent, environment: layer.environment)
                if try await RepositoryAccess.openIfPresent(own, environment: layer.environment, password: password) != nil {
                    locks += try await lockReachable(own, layer: layer.name, operation: "restore \(layer.id)")
                }
                locks += try await lockReachable(p.repo.storage, layer: nil, operation: "restore \(layer.id) from \(p.sourceEnvironment)")
            }
        } catch {
            await releaseAll()
            throw error
        }

        var bad: [BadCopy] = []
        var notes: [String] = []
        do throws(StowageError) {
            let cluster = p.topology.kind == .redisCluster
            let done = ByteTotal()
            /// One stream to one target node: the job, run.
            @Sendable func restore(
                _ i: Int, to target: PlannedStream, flush: Bool, flushed: OnceSignal?, endAfter: OnceSignal?, share: Int
            ) async throws(StowageError)
                -> StreamApplied
            {
                guard let spec = layer.nodes.first(where: { $0.name == target.node }), let db = spec.db else {
                    throw StowageError(.internalError, "\(layer.id): target \(target.node) is not in the inventory")
                }
                var access = DatabaseAccess(
                    engine: layer.engine.wire, host: db.host, port: db.port,
                    user: layer.credentials?.user, cluster: cluster, flush: flush)
                if layer.engine == .postgresql {
                    let user = layer.credentials?.user ?? "postgres"
                    let bootstrap = await DataCounts.postgresBootstrapRole(probeTarget(spec, db, layer, inventory, dbPassword))
                    access.keepRoles = Array(Set([user, bootstrap ?? "postgres"])).sorted()
                    access.jobs = jobs
                }
                let job = AgentJob.restore(
                    RestoreJob(
                        database: access,
                        secrets: JobSecrets(
                            dataKey: p.repo.keys.data.withUnsafeBytes { Data($0) },
                            idKey: p.repo.keys.id.withUnsafeBytes { Data($0) },
                            dbPassword: dbPassword?.value),
                        chunkSequence: ChunkSequence.digest(p.manifest.streams[i].chunks.map(\.id))))
                var ready: (@Sendable () -> Void)?
                if let flushed { ready = { @Sendable in flushed.finish(nil) } }
                do throws(StowageError) {
                    return try await restoreStream(
                        p, stream: i, to: try inventory.sshTarget(spec), job: job, agent: agent,
                        progress: { b in progress?(done.set(i, b)) }, ready: ready, endAfter: endAfter, share: share)
                } catch {
                    // Whatever the tool applied before the failure stays applied.
                    var e = error
                    if e.hint == nil || e.status == .remoteFailed {
                        e.hint = "\(target.node) may hold a partly applied restore; run the restore again once the cause is fixed"
                    }
                    throw e
                }
            }
            if cluster {
                // A cluster's streams (one per old master, each through its old master's node
                // when that is still a master; keys are routed by slot from there) run at
                // once: each fetch, scratch load and key copy overlaps the others. The first
                // flushes every master before it copies and says so (`ready`); the other
                // streams' inputs end only after that, so no key is copied before the flush.
                let flush = OnceSignal()
                let results = await withTaskGroup(of: (Int, Result<StreamApplied, StowageError>).self) { group in
                    for i in p.manifest.streams.indices {
                        let stream = p.manifest.streams[i]
                        let via = p.plan.targets.first { $0.node == stream.node } ?? p.plan.targets[0]
                        group.addTask {
                            let r = await captured {
                                try await restore(
                                    i, to: via, flush: i == 0, flushed: i == 0 ? flush : nil, endAfter: i == 0 ? nil : flush, share: p.manifest.streams.count)
                            }
                            // The first stream's end (however it ended) opens the others' gate.
                            if i == 0 {
                                if case .failure(let e) = r { flush.finish(e) } else { flush.finish(nil) }
                            }
                            return (i, r)
                        }
                    }
                    var out: [(Int, Result<StreamApplied, StowageError>)] = []
                    for await r in group {
                        out.append(r)
                        if case .failure = r.1 { group.cancelAll() }
                    }
                    return out.sorted { $0.0 < $1.0 }
                }
                // The first failure by stream order (a later stream's is often the cut input
                // the first one's failure caused).
                for (_, r) in results {
                    switch r {
                    case .success(let a):
                        bad += a.bad
                        notes += a.notes
                    case .failure(let e): throw e
                    }
                }
            } else {
                for i in p.manifest.streams.indices {
                    for target in p.plan.targets {
                        let a = try await restore(i, to: target, flush: i == 0, flushed: nil, endAfter: nil, share: 1)
                        bad += a.bad
                        notes += a.notes
                    }
                }
            }
        } catch {
            await releaseAll()
            throw error
        }
        await releaseAll()

        let (checks, untouched) = try await Trace.span("restored data check") { () async throws(StowageError) in
            try await check(p, inventory: inventory, password: dbPassword)
        }
        return RestoreOutcome(
            preview: p, checks: checks, untouched: untouched, badCopies: p.manifestBadCopies + bad, notes: notes,
            seconds: Date().timeIntervalSince(started))
    }

    static func lockReachable(_ storage: ReplicatedStorage, layer: String?, operation: String) async throws(StowageError) -> [LayerLock] {
        // A lock held elsewhere stops the restore; an unreachable node does not (reads fall
        // back to the other copies), unless no node can be locked at all.
        let held = try await LayerLock.acquireAll(storage.nodes, layer: layer, operation: operation, patience: LayerLock.repositoryPatience)
        if held.locks.isEmpty, let failure = storage.nodes.lazy.compactMap({ held.failed[$0.name] }).last { throw failure }
        return held.locks
    }

    /// The first batch a restore fetches (the next ones double up to the budget).
    static let firstBatch = 2 << 20

    /// Streams one backup stream's sealed chunks to a `restore` job on `target`.
    static func restoreStream(
        _ p: RestorePreview, stream index: Int, to target: SSHTarget, job: AgentJob, agent: AgentBinary,
        progress: @escaping @Sendable (Int64) -> Void, ready: (@Sendable () -> Void)? = nil, endAfter: OnceSignal? = nil, share: Int = 1
    ) async throws(StowageError) -> StreamApplied {
        let stream = p.manifest.streams[index]
        // Two batches in flight plus this queue, each 32 MiB shared by the streams restored at
        // once (`share`): the coordinator stays under 256 MiB however many there are.
        let budget = (32 << 20) / max(1, share)
        let fan = FanOut(names: ["agent"], capacity: budget)
        let consumer = fan.consumer("agent")
        let repo = p.repo
        let manifest = p.manifest
        // The reader: verified batches from the storage into the agent's queue, in order.
        // Two batches are in flight, each from another storage node first: one SSH session
        // (libssh2, one cipher block per call) and one node's disk are the ceiling of a
        // single fetch, and the next batch arrives while this one is verified and queued.
        let batches = BackupReader.batches(stream, limit: budget, rampFrom: Self.firstBatch)
        let inFlight = min(2, max(1, repo.storage.nodes.count))
        let reader = Task { () async -> Result<[BadCopy], StowageError> in
            typealias Fetched = Result<(records: [[UInt8]], bad: [BadCopy]), StowageError>
            func fetch(_ i: Int) -> Task<Fetched, Never> {
                Task {
                    var bad: [BadCopy] = []
                    do throws(StowageError) {
                        var got = try await BackupReader.fetch(repo, manifest, batches[i], keepPlain: false, firstNode: i, bad: &bad)
                        // Each sealed copy released as its last record is made: one batch in
                        // memory, not two. A chunk can come more than once in a stream (the same
                        // data twice, e.g. two equal tables): kept until its last use.
                        var uses: [String: Int] = [:]
                        for c in batches[i] { uses[c.id, default: 0] += 1 }
                        var records: [[UInt8]] = []
                        records.reserveCapacity(batches[i].count)
                        for c in batches[i] {
                            uses[c.id]! -= 1
                            guard let copy = uses[c.id] == 0 ? got.removeValue(forKey: c.id) : got[c.id] else {
                                throw StowageError(.internalError, "chunk \(c.id) of the stream was not fetched")
                            }
                            records.append(ObjectRecord.encode(name: RepositoryLayout.chunk(c.id), bytes: copy.sealed))
                        }
                        return .success((records, bad))
                    } catch {
                        return .failure(error)
                    }
                }
            }
            var pending: [Task<Fetched, Never>] = []
            var next = 0
            var bad: [BadCopy] = []
            do throws(StowageError) {
                while next < min(inFlight, batches.count) {
                    pending.append(fetch(next))
                    next += 1
                }
                while !pending.isEmpty {
                    if Task.isCancelled { throw StowageError(.cancelled, "restore cancelled") }
                    let (records, found) = try await pending.removeFirst().value.get()
                    bad += found
                    if next < batches.count {
                        pending.append(fetch(next))
                        next += 1
                    }
                    // The queue blocks while the agent is behind: on a thread of its own, not
                    // the cooperative pool.
                    await DedicatedThread.run("restore queue") { for r in records { fan.enqueue(r, to: "agent") } }
                }
                // A gated input ends only once the gate opens; a gate that fails cuts it.
                if let endAfter, let failure = await endAfter.wait() {
                    throw StowageError(failure.status, "stopped: \(failure.message)")
                }
                fan.finish()
                return .success(bad)
            } catch {
                for t in pending { t.cancel() }
                // The agent sees its input cut without the end frame and stops the tool
                // (`FeedItem.abandoned`).
                consumer.kill()
                return .failure(error)
            }
        }
        let run: AgentRun
        do throws(StowageError) {
            run = try await AgentClient.run(target, agent: agent, job: job, feed: consumer, progress: progress, ready: ready)
        } catch {
            consumer.kill()
            reader.cancel()
            // The storage's own error explains a cut input better than the agent's.
            if case .failure(let readError) = await reader.value { throw readError }
            throw error
        }
        let bad: [BadCopy]
        switch await reader.value {
        case .failure(let e): throw e
        case .success(let b): bad = b
        }
        // The agent compared it before letting the target commit; a result without it (or
        // with another) is not this stream, whatever the agent said.
        guard run.result.chunkSequence == ChunkSequence.digest(stream.chunks.map(\.id)) else {
            throw StowageError(
                .repositoryDamaged,
                "backup \(manifest.name): the chunks applied on \(target.node) are not the \(stream.chunks.count) chunks of stream \(stream.name) in their order",
                hint: "the target holds whatever the tool applied; restore an earlier backup")
        }
        let notes = run.messages.compactMap { m in m.message.map { "\(target.node): \($0)" } }
        for n in notes { Trace.log(n) }
        return StreamApplied(bad: bad, notes: notes)
    }

    /// A probe target for one node with a long query timeout (counting a large table).
    static func probeTarget(_ n: NodeSpec, _ db: Endpoint, _ layer: LayerSpec, _ inventory: Inventory, _ password: Secret?) -> ProbeTarget {
        ProbeTarget(
            name: n.name, endpoint: db, engine: layer.engine, user: layer.credentials?.user, password: password,
            connectTimeout: inventory.probe.connectTimeout, queryTimeout: max(inventory.probe.queryTimeout, 600))
    }

    /// Counts the restored data and compares it with the backup's counts.
    static func check(_ p: RestorePreview, inventory: Inventory, password: Secret?) async throws(StowageError) -> ([CountCheck], [String]) {
        var expected: [String: Int64] = [:]
        for s in p.manifest.streams { for (k, v) in s.counts ?? [:] { expected[k, default: 0] += v } }
        let layer = p.layer
        let nodes = p.plan.targets.map(\.node)
        var perNode: [[String: Int64]] = []
        for n in nodes {
            guard let spec = layer.nodes.first(where: { $0.name == n }), let db = spec.db else { continue }
            switch await DataCounts.count(probeTarget(spec, db, layer, inventory, password)) {
            case .success(let c): perNode.append(c)
            case .failure(let f):
                throw StowageError(
                    .restoreCheckFailed, "\(layer.id): the restore finished but \(n) could not be counted: \(f.message)",
                    hint: "check the data by hand; the restore itself completed")
            }
        }
        var checks: [CountCheck] = []
        var untouched = Set<String>()
        if p.topology.kind == .redisCluster {
            // Every master holds its slots' keys: the cluster's total is the sum.
            var total: [String: Int64] = [:]
            for c in perNode { for (k, v) in c { total[k, default: 0] += v } }
            perNode = [total]
        }
        for (i, found) in perNode.enumerated() {
            for db in expected.keys.sorted() {
                checks.append(CountCheck(database: perNode.count > 1 ? "\(nodes[i]):\(db)" : db, expected: expected[db]!, found: found[db] ?? 0))
            }
            // Empty ones too: a database created after the backup is left as it is, rows or not.
            for db in found.keys where expected[db] == nil { untouched.insert(db) }
        }
        return (checks, untouched.sorted())
    }
}
