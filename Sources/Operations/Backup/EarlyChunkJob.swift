// A backup's chunk job started before the repository is open (`ChunkJob.keysFollow`).
//
// Before the dump can be chunked the coordinator connects to the storage nodes, reads the
// key file, derives the key with scrypt (~0.1 s by design), takes the locks and lists the
// chunks: about 0.25 s on the lab, during which the dump tool used to wait for a job it
// had not been given. Started here right after the topology check, the agent starts the
// dump at once; the tool connects, reads its catalogs and fills its pipe (1 MiB), then waits
// for the keys. Nothing reaches the storage before the locks are held: the agent has no
// keys until the writer hands them over, and writes nothing to stdout before that.
import AgentProtocol
import Foundation
import Remote
import Support

package final class EarlyChunkJob: @unchecked Sendable {
    private let lock = NSLock()
    private var keysLine: [UInt8]?
    private var handedOver = false
    private var ended = false
    private var output: ((UnsafeRawBufferPointer) -> Void)?
    private var progress: ((Int64) -> Void)?
    private let wake = Wakeup()
    private var task: Task<Result<AgentRun, StowageError>, Never>!

    /// Starts `job` (its database and password, no keys) on `target`.
    package init(_ target: SSHTarget, agent: AgentBinary, job: ChunkJob) {
        var j = job
        j.keysFollow = true
        task = Task { [self] in
            let r = await captured {
                try await AgentClient.run(
                    target, agent: agent, job: .chunk(j),
                    framedInput: { [self] in
                        lock.withLock {
                            guard let k = keysLine else { return .hold }
                            keysLine = nil
                            return .bytes(k)
                        }
                    },
                    output: { [self] buf in lock.withLock { output }?(buf) },
                    progress: { [self] b in lock.withLock { progress }?(b) },
                    ready: nil, wake: wake)
            }
            lock.withLock { ended = true }
            return r
        }
        Trace.log("\(target.node): chunk job started ahead of the repository")
    }

    /// Gives the job its keys, and where its output and progress go. False when the job
    /// has already ended (it failed while it waited, e.g. its connection timed out while a
    /// prune held the repository): the writer then starts a job of its own.
    package func handOver(_ keys: ChunkKeys, output: @escaping (UnsafeRawBufferPointer) -> Void, progress: @escaping (Int64) -> Void) -> Bool {
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys]
        var line = Array((try? enc.encode(keys)) ?? Data())
        line.append(0x0A)
        let taken = lock.withLock { () -> Bool in
            guard !ended, !handedOver else { return false }
            handedOver = true
            self.output = output
            self.progress = progress
            keysLine = line
            return true
        }
        if taken { wake.set() }
        return taken
    }

    /// The job's run, once it ends.
    package var result: Result<AgentRun, StowageError> {
        get async { await task.value }
    }

    /// Stops the job (the agent stops the dump tool) unless it has ended.
    package func cancel() { task.cancel() }
}
