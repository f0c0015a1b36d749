// The coordinator's side of the storage-node jobs: put, get, list, delete on one node's
// repository folder, through its agent. Replication across nodes builds on this.
import AgentProtocol
import Fleet
import Foundation
import Remote
import Support
import Topology

/// One object to store: its name in the repository and its (already encrypted) bytes.
package struct StoredObject: Sendable, Equatable {
    package var name: String
    package var bytes: [UInt8]
    package init(name: String, bytes: [UInt8]) {
        self.name = name
        self.bytes = bytes
    }
}

package struct PutResult: Sendable, Equatable {
    package var stored: Int
    package var existed: Int
    package var bytes: Int64
}

package struct StorageNodeClient: Sendable {
    package var target: SSHTarget
    package var agent: AgentBinary
    /// The repository folder on this node: `<storage root>/<environment>`.
    package var repository: String

    package init(target: SSHTarget, agent: AgentBinary, repository: String) {
        self.target = target
        self.agent = agent
        self.repository = repository
    }

    /// Writes the objects (each atomically); objects already present are not written again,
    /// unless `replace` (repair, with copies it has authenticated).
    package func put(_ objects: [StoredObject], replace: Bool = false) async throws(StowageError) -> PutResult {
        for o in objects where !ObjectRecord.isValidName(o.name) {
            throw StowageError(.internalError, "refusing to store an object named '\(o.name)'")
        }
        let queue = ObjectQueue(objects)
        let run = try await AgentClient.run(target, agent: agent, job: AgentJob(type: .put, root: repository, replace: replace ? true : nil),
                                            input: { queue.next() })
        return PutResult(stored: run.result.stored ?? 0, existed: run.result.existed ?? 0, bytes: run.result.bytes ?? 0)
    }

    /// The objects' bytes by name, and the names the node does not have.
    package func get(_ names: [String]) async throws(StowageError) -> (objects: [StoredObject], missing: [String]) {
        let parser = RecordSplitter()
        let objects = ObjectList()
        let run = try await AgentClient.run(target, agent: agent, job: AgentJob(type: .get, root: repository, names: names),
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

    /// Every object under `prefix` (all when nil) with its size, sorted by name.
    package func list(prefix: String? = nil) async throws(StowageError) -> [(name: String, size: Int64)] {
        let out = ByteSink()
        _ = try await AgentClient.run(target, agent: agent, job: AgentJob(type: .list, root: repository, prefix: prefix),
                                      output: { out.append($0) })
        return String(decoding: out.bytes, as: UTF8.self).split(separator: "\n").compactMap { line in
            guard let sp = line.firstIndex(of: " "), let size = Int64(line[..<sp]) else { return nil }
            return (String(line[line.index(after: sp)...]), size)
        }.sorted { $0.name < $1.name }
    }

    /// Removes the objects; returns how many were there.
    package func delete(_ names: [String]) async throws(StowageError) -> Int {
        let run = try await AgentClient.run(target, agent: agent, job: AgentJob(type: .delete, root: repository, names: names))
        return run.result.stored ?? 0
    }
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

/// Splits a byte stream into whole object records, handing each (name, encoded record) on.
package final class RecordSplitter: @unchecked Sendable {
    package init() {}
    private var pending: [UInt8] = []
    private var start = 0
    private(set) var malformed = false
    package var complete: Bool { pending.count == start && !malformed }

    /// Hands each whole record on as (name, the encoded record, the offset of its payload in it).
    package func feed(_ b: UnsafeRawBufferPointer, _ each: (String, [UInt8], Int) -> Void) {
        pending.append(contentsOf: b)
        while !malformed {
            let p = start
            let header: (name: String, size: Int, payload: Int)?
            do throws(MalformedRecord) { header = try ObjectRecord.parseHeader(pending, at: p) } catch { malformed = true; return }
            guard let header, pending.count >= header.payload + header.size else { break }
            each(header.name, Array(pending[p..<(header.payload + header.size)]), header.payload - p)
            start = header.payload + header.size
        }
        // Drop consumed bytes once they dominate, so the buffer stays about one record long.
        if start > 0 && start >= pending.count / 2 {
            pending.removeFirst(start)
            start = 0
        }
    }
}
