// At most one backup, restore or prune per layer at a time, across coordinators: the lock
// is a flock held by the storage node's agent for as long as the coordinator's session lives
// (docs/storage-format.md, "Locking"). If the coordinator or the agent dies, the session
// ends and the kernel releases the lock at once: no stale lock, no manual unlock.
import AgentProtocol
import Foundation
import Support
import Synchronization

public final class LayerLock: Sendable {
    public let node: String
    public let layer: String
    private let task: Task<AgentRun, Error>
    private let ended: OnceSignal

    init(node: String, layer: String, task: Task<AgentRun, Error>, ended: OnceSignal) {
        self.node = node
        self.layer = layer
        self.task = task
        self.ended = ended
    }

    /// False once the holding session has ended (agent killed, connection dropped).
    public var isHeld: Bool { !ended.isFinished }

    /// Acquires the layer's lock (and the repository lock, shared) on one storage node, or
    /// fails at once naming the holder. `layer` nil with `exclusive` is prune's lock: the
    /// whole repository, while no backup or restore runs.
    public static func acquire(_ client: StorageNodeClient, layer: String?, operation: String, exclusive: Bool = false) async throws(StowageError) -> LayerLock {
        let owner = "\(ProcessInfo.processInfo.hostName) pid \(getpid()) (\(operation), since \(ISO8601DateFormatter().string(from: Date())))"
        let signal = OnceSignal()
        let ended = OnceSignal()
        let task = Task { () async throws -> AgentRun in
            defer { ended.finish(nil) }
            do throws(StowageError) {
                let run = try await AgentClient.run(client.target, agent: client.agent,
                                                    job: AgentJob(type: .lock, root: client.repository, names: layer.map { [$0] } ?? [],
                                                                  owner: owner, exclusive: exclusive),
                                                    ready: { signal.finish(nil) })
                signal.finish(StowageError(.remoteFailed, "\(client.target.node): the lock session ended before the lock was held"))
                return run
            } catch {
                signal.finish(error)
                throw error
            }
        }
        if let failure = await signal.wait() {
            _ = try? await task.value
            if failure.message.contains(" is busy: locked by") {
                throw StowageError(.locked, "\(client.target.node): \(failure.message.components(separatedBy: "lock job failed: ").last ?? failure.message)",
                                   hint: "another backup, restore or prune of this layer is running; it ends on its own", retryable: true)
            }
            throw failure
        }
        return LayerLock(node: client.target.node, layer: layer ?? "*", task: task, ended: ended)
    }

    /// How long a backup or restore waits for a repository held by a prune or a repository
    /// creation (those hold it for seconds); a layer held by another backup is not waited for.
    public static let repositoryPatience: Double = 120

    /// `acquire`, but while the whole repository is busy (not the layer), tries again every
    /// half second for up to `patience` seconds.
    public static func acquire(_ client: StorageNodeClient, layer: String?, operation: String, exclusive: Bool = false,
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

    /// Releases the lock (ends the agent's session).
    public func release() async {
        task.cancel()
        _ = try? await task.value
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
