// The first storage driver: a storage node reached over SSH, whose `stowage-agent` does
// put, get, list, delete and lock on its repository folder (docs/agent-protocol.md). Every
// call here is one agent job; nothing above this file knows that.
import AgentProtocol
import Fleet
import Foundation
import Remote
import Support
import Synchronization
import Topology

package struct SSHStorageNode: StorageDriver {
    package var target: SSHTarget
    package var agent: AgentBinary
    /// The repository folder on this node: `<storage root>/<environment>`.
    package var repository: String

    package init(target: SSHTarget, agent: AgentBinary, repository: String) {
        self.target = target
        self.agent = agent
        self.repository = repository
    }

    package var name: String { target.node }

    package func put(_ objects: [StoredObject], replace: Bool) async throws(StowageError) -> PutResult {
        for o in objects where !ObjectRecord.isValidName(o.name) {
            throw StowageError(.internalError, "refusing to store an object named '\(o.name)'")
        }
        let queue = ObjectQueue(objects)
        let run = try await AgentClient.run(
            target, agent: agent, job: .put(PutJob(root: repository, replace: replace)),
            input: { queue.next() })
        return PutResult(run.result)
    }

    package func put(feed: any RecordFeed) async throws(StowageError) -> PutResult {
        do throws(StowageError) {
            let run = try await AgentClient.run(target, agent: agent, job: .put(PutJob(root: repository)), feed: feed)
            return PutResult(run.result)
        } catch {
            feed.abandon()
            throw error
        }
    }

    package func get(_ names: [String]) async throws(StowageError) -> (objects: [StoredObject], missing: [String]) {
        let parser = RecordSplitter()
        let objects = ObjectList()
        let run = try await AgentClient.run(
            target, agent: agent, job: .get(GetJob(root: repository, names: names)),
            output: { buf in
                parser.feed(buf) { name, record, payload in
                    objects.append(StoredObject(name: name, bytes: Array(record[payload...])))
                }
            })
        guard parser.complete else {
            throw StowageError(.remoteFailed, "\(target.node): the objects arrived cut short", retryable: true)
        }
        return (objects.items, run.result.missing ?? [])
    }

    package func list(prefix: String?) async throws(StowageError) -> [ListedObject] {
        let out = ByteSink()
        _ = try await AgentClient.run(
            target, agent: agent, job: .list(ListJob(root: repository, prefix: prefix)),
            output: { out.append($0) })
        return String(decoding: out.bytes, as: UTF8.self).split(separator: "\n").compactMap { line in
            guard let sp = line.firstIndex(of: " "), let size = Int64(line[..<sp]) else { return nil }
            return ListedObject(name: String(line[line.index(after: sp)...]), size: size)
        }.sorted { $0.name < $1.name }
    }

    package func delete(_ names: [String]) async throws(StowageError) -> Int {
        let run = try await AgentClient.run(target, agent: agent, job: .delete(DeleteJob(root: repository, names: names)))
        return run.result.stored ?? 0
    }

    package func freeSpace() async throws(StowageError) -> FreeSpace? {
        // The storage root (the repository's parent) exists before the repository does.
        let root = (repository as NSString).deletingLastPathComponent
        let run = try await AgentClient.run(target, agent: agent, job: .check(CheckJob(path: root)))
        return run.result.freeBytes.map { FreeSpace(freeBytes: $0, totalBytes: run.result.totalBytes) }
    }

    package func prewarm(connections: Int) { SSHConnectionPool.shared.prewarm([target], count: connections) }

    /// The lock is a flock held by the node's agent for as long as this session lives
    /// (docs/storage-format.md, "Locking"). If the coordinator or the agent dies, the
    /// session ends and the node's kernel releases the lock at once.
    package func lock(layers: [String], owner: String, exclusive: Bool) async throws(StowageError) -> any StorageLockSession {
        let signal = OnceSignal()
        let ended = OnceSignal()
        let releasing = Wakeup()
        let job = AgentJob.lock(LockJob(root: repository, layers: layers, owner: owner, exclusive: exclusive))
        let (target, agent) = (self.target, self.agent)
        let task = Task { () async throws -> AgentRun in
            defer { ended.finish(nil) }
            do throws(StowageError) {
                let run = try await AgentClient.run(
                    target, agent: agent, job: job, framedInput: nil, output: nil, progress: nil,
                    ready: { signal.finish(nil) }, until: releasing)
                signal.finish(StowageError(.remoteFailed, "\(target.node): the lock session ended before the lock was held"))
                return run
            } catch {
                signal.finish(error)
                throw error
            }
        }
        if let failure = await signal.wait() {
            _ = try? await task.value
            if failure.message.contains(" is busy: locked by") {
                throw StowageError(
                    .locked, "\(target.node): \(failure.message.components(separatedBy: "lock job failed: ").last ?? failure.message)",
                    hint: "another backup, restore or prune of this layer is running; it ends on its own", retryable: true)
            }
            throw failure
        }
        return SSHLockSession(target: target, task: task, ended: ended, releasing: releasing)
    }
}

extension PutResult {
    init(_ result: AgentEvent) {
        self.init(stored: result.stored ?? 0, existed: result.existed ?? 0, bytes: result.bytes ?? 0)
    }
}

/// A `lock` job's session: the lock is held until its input ends.
final class SSHLockSession: StorageLockSession {
    private let target: SSHTarget
    private let task: Task<AgentRun, Error>
    private let ended: OnceSignal
    private let releasing: Wakeup
    private let acquired: Double

    init(target: SSHTarget, task: Task<AgentRun, Error>, ended: OnceSignal, releasing: Wakeup) {
        self.target = target
        self.task = task
        self.ended = ended
        self.releasing = releasing
        acquired = Deadline.now()
    }

    var isHeld: Bool { !ended.isFinished }

    /// The job's input ends, the agent unlocks and finishes, and the connection is free for
    /// the next job. Cancelling the job (closing the channel) would release it as well, but
    /// the connection would be lost with it.
    ///
    /// A node that failed another job since the lock was taken, or does not answer within
    /// `releaseGrace` (its address blocked, its sshd frozen), gets the hard way at once: the
    /// channel and its connection are closed, and the node's kernel drops the lock as soon as
    /// it learns the connection is gone (the sooner the close is sent, the sooner that is).
    func release() async {
        let task = task
        if SSHConnectionPool.shared.failed(target, since: acquired) {
            task.cancel()
            _ = try? await task.value
            Trace.log("\(target.node) lock released (connection closed, the node failed meanwhile)")
            return
        }
        releasing.set()
        let clean = await withTaskGroup(of: Bool.self) { g in
            g.addTask {
                _ = try? await task.value; return true
            }
            g.addTask {
                try? await Task.sleep(for: .seconds(SSHLockSession.releaseGrace)); return false
            }
            let first = await g.next() ?? false
            // Cancelling the job ends the first child; cancelling the group ends the sleep.
            if !first { task.cancel() }
            g.cancelAll()
            return first
        }
        if !clean { Trace.log("\(target.node) lock released by closing the connection") }
    }

    static let releaseGrace: Double = 2
}

/// Hands out encoded records one object at a time (used on one connection thread).
final class ObjectQueue: @unchecked Sendable {
    private var objects: [StoredObject]
    private var i = 0
    init(_ o: [StoredObject]) { objects = o }
    func next() -> [UInt8]? {
        guard i < objects.count else { return nil }
        defer { i += 1 }
        return ObjectRecord.encode(name: objects[i].name, bytes: objects[i].bytes)
    }
}

/// Objects collected on one connection thread while the caller awaits.
final class ObjectList: @unchecked Sendable {
    private(set) var items: [StoredObject] = []
    func append(_ o: StoredObject) { items.append(o) }
}

final class ByteSink: @unchecked Sendable {
    private(set) var bytes: [UInt8] = []
    func append(_ b: UnsafeRawBufferPointer) { bytes.append(contentsOf: b) }
}
