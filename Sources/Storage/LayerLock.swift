// At most one backup, restore or prune per layer at a time, across coordinators: the lock
// is a flock held by the storage node's agent for as long as the coordinator's session lives
// (docs/storage-format.md, "Locking"). If the coordinator or the agent dies, the session
// ends and the kernel releases the lock at once: no stale lock, no manual unlock.
import AgentProtocol
import Fleet
import Foundation
import Remote
import Support
import Synchronization
import Topology

package final class LayerLock: Sendable {
    package let node: String
    package let layer: String
    private let task: Task<AgentRun, Error>
    private let ended: OnceSignal
    private let releasing: Wakeup
    private let target: SSHTarget
    private let acquired: Double

    init(target: SSHTarget, layer: String, task: Task<AgentRun, Error>, ended: OnceSignal, releasing: Wakeup) {
        self.node = target.node
        self.target = target
        self.layer = layer
        self.task = task
        self.ended = ended
        self.releasing = releasing
        acquired = Deadline.now()
    }

    /// False once the holding session has ended (agent killed, connection dropped).
    package var isHeld: Bool { !ended.isFinished }

    /// Acquires the layer's lock (and the repository lock, shared) on one storage node, or
    /// fails at once naming the holder. `layer` nil with `exclusive` is prune's lock: the
    /// whole repository, while no backup or restore runs.
    package static func acquire(_ client: StorageNodeClient, layer: String?, operation: String, exclusive: Bool = false) async throws(StowageError) -> LayerLock {
        let owner = "\(ProcessInfo.processInfo.hostName) pid \(getpid()) (\(operation), since \(ISO8601DateFormatter().string(from: Date())))"
        let signal = OnceSignal()
        let ended = OnceSignal()
        let releasing = Wakeup()
        let task = Task { () async throws -> AgentRun in
            defer { ended.finish(nil) }
            do throws(StowageError) {
                let run = try await AgentClient.run(client.target, agent: client.agent,
                                                    job: AgentJob(type: .lock, root: client.repository, names: layer.map { [$0] } ?? [],
                                                                  owner: owner, exclusive: exclusive),
                                                    framedInput: nil, output: nil, progress: nil,
                                                    ready: { signal.finish(nil) }, until: releasing)
                signal.finish(StowageError(.remoteFailed, "\(client.target.node): the lock session ended before the lock was held"))
                return run
            } catch {
                signal.finish(error)
                throw error
            }
        }
        let started = Deadline.now()
        let failure = await signal.wait()
        Trace.log("\(client.target.node) lock \(layer ?? "*")\(exclusive ? " exclusive" : ""): \(failure == nil ? "held" : "refused") after \(Int((Deadline.now() - started) * 1000)) ms")
        if let failure {
            _ = try? await task.value
            if failure.message.contains(" is busy: locked by") {
                throw StowageError(.locked, "\(client.target.node): \(failure.message.components(separatedBy: "lock job failed: ").last ?? failure.message)",
                                   hint: "another backup, restore or prune of this layer is running; it ends on its own", retryable: true)
            }
            throw failure
        }
        return LayerLock(target: client.target, layer: layer ?? "*", task: task, ended: ended, releasing: releasing)
    }

    /// How long a backup or restore waits for a repository held by a prune or a repository
    /// creation (those hold it for seconds); a layer held by another backup is not waited for.
    package static let repositoryPatience: Double = 120

    /// `acquire`, but while the whole repository is busy (not the layer), tries again every
    /// half second for up to `patience` seconds.
    package static func acquire(_ client: StorageNodeClient, layer: String?, operation: String, exclusive: Bool = false,
                               waitWhileRepositoryBusy patience: Double) async throws(StowageError) -> LayerLock {
        let deadline = Date().addingTimeInterval(patience)
        while true {
            do throws(StowageError) {
                return try await acquire(client, layer: layer, operation: operation, exclusive: exclusive)
            } catch {
                let repositoryBusy = error.status == .locked && error.message.contains("the repository is busy")
                guard repositoryBusy, Date() < deadline else { throw error }
                try? await Task.sleep(for: .milliseconds(500))
            }
        }
    }

    /// Releases the lock: the job's input ends, the agent unlocks and finishes, and the
    /// connection is free for the next job. Cancelling the job (closing the channel) would
    /// release it as well, but the connection would be lost with it.
    ///
    /// A node that failed another job since the lock was taken, or does not answer within
    /// `releaseGrace` (its address blocked, its sshd frozen), gets the hard way at once: the
    /// channel and its connection are closed, and the node's kernel drops the lock as soon as
    /// it learns the connection is gone (the sooner the close is sent, the sooner that is).
    package func release() async {
        let started = Deadline.now()
        let task = task
        if SSHConnectionPool.shared.failed(target, since: acquired) {
            task.cancel()
            _ = try? await task.value
            Trace.log("\(node) lock \(layer) released (connection closed, the node failed meanwhile) in \(Int((Deadline.now() - started) * 1000)) ms")
            return
        }
        releasing.set()
        let clean = await withTaskGroup(of: Bool.self) { g in
            g.addTask { _ = try? await task.value; return true }
            g.addTask { try? await Task.sleep(for: .seconds(LayerLock.releaseGrace)); return false }
            let first = await g.next() ?? false
            // Cancelling the job ends the first child; cancelling the group ends the sleep.
            if !first { task.cancel() }
            g.cancelAll()
            return first
        }
        Trace.log("\(node) lock \(layer) released \(clean ? "" : "(connection closed) ")in \(Int((Deadline.now() - started) * 1000)) ms")
    }

    static let releaseGrace: Double = 2

    /// Releases every lock at once.
    package static func release(_ locks: [LayerLock]) async {
        await withTaskGroup(of: Void.self) { g in
            for l in locks { g.addTask { await l.release() } }
        }
    }
}

/// Locks held on several nodes of one storage.
package struct HeldLocks: Sendable {
    package var locks: [LayerLock]
    /// Nodes that could not be locked for another reason than a holder (unreachable,
    /// no agent), with the error.
    package var failed: [String: StowageError]

    /// Releases every lock at once.
    package func release() async { await LayerLock.release(locks) }
}

extension LayerLock {
    /// The lock on each node, one node after the other in the storage's order: two
    /// coordinators racing for a layer meet on the first node, and one of them wins
    /// outright instead of each holding half. A lock held elsewhere releases what was taken
    /// and throws (`locked`); a node that fails otherwise is listed in `failed`.
    package static func acquireAll(_ nodes: [StorageNodeClient], layer: String?, operation: String, exclusive: Bool = false,
                                  patience: Double) async throws(StowageError) -> HeldLocks {
        var held = HeldLocks(locks: [], failed: [:])
        for node in nodes {
            do throws(StowageError) {
                held.locks.append(try await acquire(node, layer: layer, operation: operation, exclusive: exclusive,
                                                    waitWhileRepositoryBusy: patience))
            } catch {
                // A lock held elsewhere, or a node this coordinator is not set up to trust
                // or log into: nothing goes ahead on the other nodes alone.
                if error.status == .locked || error.isSetupFault {
                    await held.release()
                    throw error
                }
                held.failed[node.target.node] = error
            }
        }
        return held
    }
}

/// Resumes one waiter with the first outcome it is given.
final class OnceSignal: Sendable {
    private struct State {
        var outcome: StowageError??
        var waiter: CheckedContinuation<StowageError?, Never>?
    }
    private let state = Mutex(State())

    func finish(_ failure: StowageError?) {
        let waiter = state.withLock { s -> CheckedContinuation<StowageError?, Never>? in
            guard s.outcome == nil else { return nil }
            s.outcome = .some(failure)
            defer { s.waiter = nil }
            return s.waiter
        }
        waiter?.resume(returning: failure)
    }

    var isFinished: Bool { state.withLock { $0.outcome != nil } }

    func wait() async -> StowageError? {
        await withCheckedContinuation { (c: CheckedContinuation<StowageError?, Never>) in
            let ready = state.withLock { s -> StowageError?? in
                if let o = s.outcome { return o }
                s.waiter = c
                return nil
            }
            if let r = ready { c.resume(returning: r) }
        }
    }
}
