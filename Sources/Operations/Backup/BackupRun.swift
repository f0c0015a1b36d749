// `stowage backup ENV/LAYER`: topology first, then the dump from the node the plan names,
// streamed through the agent into the replicated storage, then retention.
import AgentProtocol
import Fleet
import Foundation
import Remote
import Repository
import Storage
import Support
import Topology

package struct BackupOutcome: Sendable {
    package var manifest: Manifest
    package var replicas: QuorumOutcome
    package var notes: [String]
    package var plan: BackupPlan
    package var pruned: PruneReport?
    /// Retention failed after the backup committed (the backup stands).
    package var pruneError: StowageError?
    package var seconds: Double
}

package enum BackupRun {
    /// How long a slot's run waits for its layer held by another run (seconds).
    package static let slotPatience: Double = 3600

    package static func run(
        inventory: Inventory, layer: LayerSpec, storage spec: StorageSpec, agent: AgentBinary,
        from: DumpPreference = .primary, keep: Int? = nil, kind: BackupName.Kind = .manual,
        zstdLevel: Int? = nil, progress: (@Sendable (Int64) -> Void)? = nil, slot: Date? = nil
    ) async throws(StowageError) -> BackupOutcome {
        let started = Date()
        // Credentials and topology before anything touches the storage.
        let topology = try await Trace.span("topology check of \(layer.id)") { () async throws(StowageError) in
            try await TopologyCheck.run([layer], settings: inventory.probe)[0]
        }
        let plan = try Plans.backup(topology, from: from)
        let dbPassword = try layer.credentials?.resolvePassword(layer: layer.id)
        let storagePassword = try spec.resolvePassword()

        var streams: [BackupStreamSource] = []
        for (i, s) in plan.streams.enumerated() {
            guard let node = layer.nodes.first(where: { $0.name == s.node }), let db = node.db else {
                throw StowageError(.internalError, "\(layer.id): planned node \(s.node) is not in the inventory")
            }
            let job = ChunkJob(
                database: DatabaseAccess(
                    engine: layer.engine.wire, host: db.host, port: db.port,
                    user: layer.credentials?.user, fromReplica: plan.fromReplica),
                secrets: JobSecrets(dbPassword: dbPassword?.value))
            let name = plan.streams.count == 1 ? "dump" : "master-\(i + 1)-\(s.node)"
            streams.append(BackupStreamSource(name: name, node: try inventory.sshTarget(node), job: job, slots: s.slots))
        }
        // The dumps start now and wait for their keys while the repository is opened and
        // locked (EarlyChunkJob.swift). A slot's run that must wait for another coordinator's
        // backup of the layer drops them (a dump held open for that long would hold a
        // snapshot open on the primary) and starts fresh ones once it may write.
        var early: [EarlyChunkJob]? = streams.map { EarlyChunkJob($0.node, agent: agent, job: $0.job) }
        defer { early?.forEach { $0.cancel() } }

        let storage = try ReplicatedStorage(spec, inventory: inventory, agent: agent, environment: layer.environment)
        // Each storage node carries a lock session and a listing or a stream at once
        // (the dumped nodes' connections are the early jobs' own).
        storage.prewarm(connections: 2)
        let repo = try await Trace.span("repository open") { () async throws(StowageError) in
            try await RepositoryAccess.open(storage, environment: layer.environment, password: storagePassword, create: true)
        }

        let metadata = BackupMetadata(
            engine: layer.engine.rawValue, engineVersion: topology.node(plan.streams[0].node)?.version,
            sourceRole: plan.streams[0].role.rawValue, topology: topology)
        var result: BackupWriteResult
        var waitedSince: Date?
        while true {
            let name = BackupName(date: waitedSince == nil ? started : Date(), kind: kind)
            Trace.log("backup \(name) of \(layer.id) starts")
            do throws(StowageError) {
                result = try await BackupWriter.write(
                    repo, layer: layer.name, name: name, streams: streams, agent: agent,
                    metadata: metadata, zstdLevel: zstdLevel ?? spec.zstdLevel ?? layer.engine.defaultZstdLevel, progress: progress, unlessDoneSince: slot,
                    early: early)
                break
            } catch {
                early?.forEach { $0.cancel() }
                early = nil
                // A slot's run that finds the layer held by a backup of the layer (another
                // coordinator's run of the same slot, most likely: the holder's owner text
                // names the operation), or by the retention that follows one, waits for it,
                // then looks whether that one did the slot. Any other holder (a restore, a
                // prune), or an hour of waiting, ends the run as before: exit 11, retried by
                // the scheduler.
                guard slot != nil, error.status == .locked,
                    error.message.contains("backup \(layer.id) ") || error.message.contains("(forget \(layer.id),"),
                    Date().timeIntervalSince(waitedSince ?? Date()) < BackupRun.slotPatience
                else { throw error }
                if waitedSince == nil { waitedSince = Date() }
                try? await Task.sleep(for: .seconds(1))
                if Task.isCancelled { throw StowageError(.cancelled, "backup \(layer.id) cancelled while waiting for its layer") }
            }
        }
        // Retention only after a committed backup: a failed one prunes nothing.
        var pruned: PruneReport?
        var pruneError: StowageError?
        if let keep {
            do throws(StowageError) {
                pruned = try await Trace.span("retention") { () async throws(StowageError) in try await Pruner.prune(repo, layer: layer.name, keep: keep) }
            } catch {
                pruneError = error
            }
        }
        return BackupOutcome(
            manifest: result.manifest, replicas: result.replicas, notes: plan.notes, plan: plan, pruned: pruned,
            pruneError: pruneError, seconds: Date().timeIntervalSince(started))
    }
}
