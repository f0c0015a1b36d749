// Writing one backup: the source node's agent chunks, compresses and encrypts the dump;
// the coordinator forwards each chunk to every storage node that lacks it, through bounded
// queues (a slow node slows the dump instead of growing memory), then commits the manifest
// on the write quorum, last, and only to nodes that hold every chunk
// (docs/storage-format.md, "Writes").
import AgentProtocol
@preconcurrency import Crypto
import Fleet
import Foundation
import Remote
import Repository
import Storage
import Support
import Topology

/// Facts about a backup that the writer does not find out itself.
package struct BackupMetadata: Sendable {
    package var engine: String
    package var engineVersion: String?
    package var sourceRole: String?
    package var topology: LayerTopology?

    package init(engine: String, engineVersion: String? = nil, sourceRole: String? = nil, topology: LayerTopology? = nil) {
        self.engine = engine
        self.engineVersion = engineVersion
        self.sourceRole = sourceRole
        self.topology = topology
    }
}

/// One stream of a backup: the node whose agent produces it and the `chunk` job that does
/// (a `command`, or a `database` to dump, with its password in `secrets`). The writer adds
/// the repository's keys and chunking parameters.
package struct BackupStreamSource: Sendable {
    package var name: String
    package var node: SSHTarget
    package var job: ChunkJob
    package var slots: String?

    package init(name: String, node: SSHTarget, job: ChunkJob, slots: String? = nil) {
        self.name = name
        self.node = node
        self.job = job
        self.slots = slots
    }
}

package struct BackupWriteResult: Sendable {
    package var manifest: Manifest
    /// Nodes holding the whole backup, and the ones that missed it (with why).
    package var replicas: QuorumOutcome
}

package enum BackupWriter {

    /// Where a write is, for tests that act at each step (kill an agent, cancel the task),
    /// with the locks it holds then.
    package enum Phase: Sendable { case locked, listed, chunksDone, manifest }
    package typealias PhaseHook = @Sendable (Phase, [LayerLock]) async -> Void

    /// A backup of one command's output on `source` (tests, benchmarks).
    package static func write(
        _ repo: OpenRepository, layer: String, name: BackupName, source: SSHTarget, agent: AgentBinary,
        command: [String], streamName: String, metadata: BackupMetadata,
        zstdLevel: Int = 3, phase: PhaseHook? = nil
    ) async throws(StowageError) -> BackupWriteResult {
        try await write(
            repo, layer: layer, name: name, streams: [BackupStreamSource(name: streamName, node: source, job: ChunkJob(command: command))],
            agent: agent, metadata: metadata, zstdLevel: zstdLevel, phase: phase)
    }

    /// The newest backup of the layer that counts as the slot's: started at or after `slot`
    /// and committed, i.e. its manifest is on at least the write quorum of the nodes (on
    /// every node that answered, when fewer answered than the quorum). Pure.
    package static func slotDoneBy(manifests: [String: [BackupName]], slot: Date, quorum: Int?, nodes: Int) -> BackupName? {
        let needed = min(quorum ?? nodes, max(1, manifests.count))
        var copies: [BackupName: Int] = [:]
        for names in manifests.values { for n in Set(names) where n.date >= slot.addingTimeInterval(-0.999) { copies[n, default: 0] += 1 } }
        return copies.filter { $0.value >= needed }.keys.max()
    }

    /// A backup of one or more streams (one per Redis Cluster master), dumped at once.
    /// `unlessDoneSince`: the scheduled slot this run is for; once the locks are held, a
    /// backup of the layer committed at or after it ends the run (`alreadyDone`) before
    /// anything is dumped: two coordinators given the same slot take one backup.
    /// `early`: the streams' chunk jobs, already started and waiting for their keys (by
    /// index; the caller cancels them if this throws).
    package static func write(
        _ repo: OpenRepository, layer: String, name: BackupName, streams: [BackupStreamSource], agent: AgentBinary,
        metadata: BackupMetadata, zstdLevel: Int = 3, progress: (@Sendable (Int64) -> Void)? = nil,
        unlessDoneSince slot: Date? = nil, phase: PhaseHook? = nil, early: [EarlyChunkJob]? = nil
    ) async throws(StowageError) -> BackupWriteResult {
        let started = Date()
        let storage = repo.storage
        var failures: [String: String] = [:]

        // The layer's lock, and the repository's shared lock that keeps prune away, on every
        // reachable node for the whole write — taken before the chunks are listed: a chunk
        // listed before the lock could be reclaimed by a prune before the lock, and the
        // backup would then reference a chunk it did not send. A repository held by a prune
        // (seconds) is waited for; a layer held by another backup or restore is not.
        let held = try await LayerLock.acquireAll(
            storage.nodes, layer: layer, operation: "backup \(repo.environment)/\(layer) \(name)",
            patience: LayerLock.repositoryPatience)
        for (node, error) in held.failed { failures[node] = error.message }
        let locks = held.locks
        await phase?(.locked, locks)
        if let slot {
            // Under the layer's lock: a run of the same slot elsewhere has either committed
            // (and is seen here) or not started its write (and will see this one's).
            let lists = await withTaskGroup(of: (String, [BackupName]?).self) { g in
                for node in storage.nodes where failures[node.name] == nil {
                    g.addTask {
                        let r = await captured { try await node.list(prefix: "\(RepositoryLayout.backupsPrefix)/\(layer)") }
                        return (node.name, try? r.get().compactMap { RepositoryLayout.manifest($0.name)?.name })
                    }
                }
                var out: [String: [BackupName]] = [:]
                for await (n, names) in g { if let names { out[n] = names } }
                return out
            }
            if let done = slotDoneBy(manifests: lists, slot: slot, quorum: storage.quorum, nodes: storage.nodes.count) {
                await held.release()
                throw StowageError(
                    .alreadyDone, "\(repo.environment)/\(layer): the run due at \(BackupName(date: slot, kind: .auto).stamp) is already done: backup \(done)",
                    hint: "another coordinator ran this slot, or a backup was taken since; nothing was written")
            }
        }
        // What each node already holds: those chunks are not sent to it again (all nodes
        // asked at once).
        var present: [String: Set<String>] = [:]
        let listed = await withTaskGroup(of: (String, Result<[String], StowageError>).self) { g in
            for node in storage.nodes where failures[node.name] == nil {
                g.addTask { (node.name, await captured { try await node.list(prefix: RepositoryLayout.chunksPrefix).map(\.name) }) }
            }
            var out: [(String, Result<[String], StowageError>)] = []
            for await r in g { out.append(r) }
            return out
        }
        for (node, result) in listed {
            switch result {
            case .success(let names): present[node] = Set(names)
            case .failure(let error): failures[node] = error.message
            }
        }
        let live = storage.nodes.filter { present[$0.name] != nil }
        await phase?(.listed, locks)
        do throws(StowageError) {
            let r = try await writeLocked(
                repo, layer: layer, name: name, streams: streams, agent: agent,
                metadata: metadata, zstdLevel: zstdLevel, progress: progress, started: started,
                live: live, present: present, failures: failures, locks: locks, phase: phase, early: early)
            await held.release()
            return r
        } catch {
            await held.release()
            throw await reclaimingLeftovers(of: error, repo: repo, layer: layer, name: name)
        }
    }

    /// A failed write may have left chunks on some nodes that no backup references (87 MB of
    /// them filled a node once, and every later backup failed on the full disk). They go at
    /// once, under the repository's exclusive lock, taken without waiting: while another
    /// backup holds the repository, they stay for the next prune (`stowage storage prune`, or
    /// the next retention that removes a backup), since that backup may be about to
    /// reference the very same chunks. The run's own error is what is reported.
    static func reclaimingLeftovers(of error: StowageError, repo: OpenRepository, layer: String, name: BackupName) async -> StowageError {
        guard ![.cancelled, .locked, .alreadyDone, .hostKeyRefused, .sshAuthFailed, .agentMismatch].contains(error.status), !Task.isCancelled else {
            return error
        }
        var e = error
        switch await captured({
            try await Pruner.reclaimUnreferenced(
                repo, dryRun: false, patience: 0,
                operation: "clean up after backup \(repo.environment)/\(layer) \(name)")
        }) {
        case .success(let r):
            let removed = r.removed.values.reduce(0, +)
            if removed > 0 {
                e.message += "; the \(removed) chunk files it left unreferenced were removed (\(formatBytes(r.bytes.values.reduce(0, +))))"
            }
            Trace.log("backup \(name) failed; leftovers removed: \(r.removed)")
        case .failure(let why):
            Trace.log("backup \(name) failed; leftovers left for the next prune: \(why.message)")
        }
        return e
    }

    static func writeLocked(
        _ repo: OpenRepository, layer: String, name: BackupName, streams: [BackupStreamSource], agent: AgentBinary,
        metadata: BackupMetadata, zstdLevel: Int, progress: (@Sendable (Int64) -> Void)?, started: Date,
        live: [any StorageDriver], present: [String: Set<String>],
        failures initialFailures: [String: String], locks: [LayerLock],
        phase: PhaseHook?, early: [EarlyChunkJob]?
    ) async throws(StowageError) -> BackupWriteResult {
        let storage = repo.storage
        var failures = initialFailures
        let fan = FanOut(names: live.map(\.name), capacity: 32 << 20)

        // One put session per live node, fed by its queue.
        let puts = live.map { node in
            Task { () async -> (String, StowageError?) in
                // A driver whose session fails abandons its feed: nothing more is queued for it.
                do throws(StowageError) {
                    _ = try await node.put(feed: fan.consumer(node.name))
                    return (node.name, nil)
                } catch {
                    return (node.name, error)
                }
            }
        }

        // The sources, all at once: records out, forwarded to every node that lacks them
        // (a chunk two streams share is sent once).
        let presentSnapshot = present
        let newBytes = ByteTotal()
        let dumped = ByteTotal()
        let sent = SentChunks()
        let keys = repo.keys
        let dataKey = keys.data.withUnsafeBytes { Data($0) }, idKey = keys.id.withUnsafeBytes { Data($0) }
        let chunkerSeed = Data(keys.chunkerSeed)
        let c = repo.config.chunker
        let liveNames = live.map(\.name)
        let runs = await withTaskGroup(of: (Int, Result<AgentRun, StowageError>, Bool).self) { group in
            for (i, s) in streams.enumerated() {
                var job = s.job
                job.secrets.dataKey = dataKey
                job.secrets.idKey = idKey
                job.secrets.chunkerSeed = chunkerSeed
                job.chunkSizes = [c.min, c.avg, c.max]
                job.zstdLevel = zstdLevel
                let started = early.flatMap { i < $0.count ? $0[i] : nil }
                group.addTask {
                    let parser = RecordSplitter()
                    let output = { (buf: UnsafeRawBufferPointer) in
                        parser.feed(buf) { name, record, _ in
                            guard sent.insert(name) else { return }
                            var sentAnywhere = false
                            for n in liveNames where !presentSnapshot[n]!.contains(name) {
                                fan.enqueue(record, to: n)
                                sentAnywhere = true
                            }
                            // Stored bytes are the envelope's, without the record's name and size header.
                            if sentAnywhere { newBytes.add(record.count - 12 - name.utf8.count) }
                        }
                    }
                    let dumpedSoFar = { (b: Int64) -> Void in progress?(dumped.set(i, b)) }
                    if let started,
                        started.handOver(
                            ChunkKeys(secrets: job.secrets, chunkSizes: job.chunkSizes, zstdLevel: job.zstdLevel), output: output,
                            progress: dumpedSoFar)
                    {
                        return (i, await started.result, parser.complete)
                    }
                    do throws(StowageError) {
                        let run = try await AgentClient.run(
                            s.node, agent: agent, job: .chunk(job), framedInput: nil, output: output, progress: dumpedSoFar, ready: nil)
                        return (i, .success(run), parser.complete)
                    } catch {
                        return (i, .failure(error), parser.complete)
                    }
                }
            }
            var out: [(Int, Result<AgentRun, StowageError>, Bool)] = []
            for await r in group { out.append(r) }
            return out.sorted { $0.0 < $1.0 }
        }
        // Complete records already queued are complete objects; ending the sessions cleanly
        // keeps them (unreferenced chunks are pruned later), and no manifest is written.
        fan.finish()
        for t in puts {
            let (node, err) = await t.value
            if let err { failures[node] = err.message }
        }
        var done: [(BackupStreamSource, AgentRun)] = []
        for (i, r, complete) in runs {
            switch r {
            case .failure(let e): throw e
            case .success(let run):
                guard complete else {
                    throw StowageError(.remoteFailed, "\(streams[i].node.node): the chunk stream ended inside a record", retryable: true)
                }
                done.append((streams[i], run))
            }
        }

        let chunkOutcome = QuorumOutcome.decide(nodes: storage.nodes.map(\.name), failures: failures, quorum: storage.quorum)
        guard chunkOutcome.committed else {
            let why = failures.keys.sorted().map { "\($0): \(failures[$0]!)" }.joined(separator: "; ")
            throw StowageError(
                .quorumNotReached,
                "storage \(storage.name): \(chunkOutcome.complete.count) of \(storage.nodes.count) nodes hold the backup's chunks, quorum is \(storage.quorum.map(String.init) ?? "all"); \(why)",
                hint: "nothing was committed; bring the nodes back or lower the quorum", retryable: true)
        }

        await phase?(.chunksDone, locks)
        if Task.isCancelled {
            throw StowageError(.cancelled, "backup \(repo.environment)/\(layer) \(name) cancelled before its manifest; nothing was committed")
        }

        let manifestStreams = done.map { s, run in
            let chunks = run.chunks.map { ManifestStream.Chunk(id: $0.id ?? "", size: Int($0.bytes ?? 0), stored: $0.stored ?? 0) }
            return ManifestStream(
                name: s.name, rawBytes: run.result.bytes ?? 0, storedBytes: Int64(chunks.map(\.stored).reduce(0, +)),
                chunks: chunks, node: s.node.node, slots: s.slots,
                counts: run.result.counts)
        }
        let fmt = ISO8601DateFormatter()
        let manifest = Manifest(
            format: 1, environment: repo.environment, layer: layer, name: name.description,
            engine: metadata.engine, engineVersion: metadata.engineVersion, sourceNode: streams[0].node.node,
            sourceRole: metadata.sourceRole, topology: metadata.topology,
            started: fmt.string(from: started), finished: fmt.string(from: Date()), streams: manifestStreams,
            rawBytes: manifestStreams.map(\.rawBytes).reduce(0, +),
            storedBytes: manifestStreams.map(\.storedBytes).reduce(0, +), newBytes: newBytes.total)
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys]
        let objectName = RepositoryLayout.manifest(layer: layer, name: name)
        let sealed = Envelope.seal(Array(try! enc.encode(manifest)), key: keys.data, aad: objectName)

        // A lock session that died (its agent killed, its connection dropped) no longer keeps
        // other writers or prune away: do not commit on the strength of it.
        for l in locks where !l.isHeld {
            throw StowageError(
                .remoteFailed, "backup \(repo.environment)/\(layer) \(name): the lock on \(l.node) was lost during the write; nothing was committed",
                hint: "run the backup again", retryable: true)
        }
        await phase?(.manifest, locks)
        if Task.isCancelled {
            throw StowageError(.cancelled, "backup \(repo.environment)/\(layer) \(name) cancelled before its manifest; nothing was committed")
        }

        // The manifest goes only to nodes holding every chunk, and commits on the quorum.
        let holders = ReplicatedStorage(
            name: storage.name, nodes: storage.nodes.filter { chunkOutcome.complete.contains($0.name) },
            quorum: nil)
        var manifestFailures = failures
        for node in holders.nodes {
            do throws(StowageError) {
                _ = try await node.put([StoredObject(name: objectName, bytes: sealed)])
            } catch {
                manifestFailures[node.name] = error.message
            }
        }
        let outcome = QuorumOutcome.decide(nodes: storage.nodes.map(\.name), failures: manifestFailures, quorum: storage.quorum)
        guard outcome.committed else {
            // Not committed on the quorum: take the manifest back where it landed, so the
            // backup is not listed anywhere (best effort; a copy that stays is complete, and
            // shows as degraded until repaired or pruned).
            for node in holders.nodes where manifestFailures[node.name] == nil {
                _ = try? await node.delete([objectName])
            }
            throw StowageError(
                .quorumNotReached,
                "storage \(storage.name): the manifest of \(objectName) reached \(outcome.complete.count) of \(storage.nodes.count) nodes, quorum is \(storage.quorum.map(String.init) ?? "all"); it was withdrawn",
                hint: "nothing was committed; run the backup again once the nodes are back", retryable: true)
        }
        return BackupWriteResult(manifest: manifest, replicas: outcome)
    }
}
