import AgentProtocol
// The pumps' shared parts: how backup and restore move sealed records between one agent
// and several others through bounded queues (a slow receiver slows the sender instead of
// growing memory), and their byte counts.
import Fleet
import Foundation
import Remote
import Repository
import Storage
import Support
import Topology

package final class ByteTotal: @unchecked Sendable {
    package init() {}
    private let lock = NSLock()
    private var n: Int64 = 0
    private var parts: [Int: Int64] = [:]
    package func add(_ k: Int) { lock.lock(); n += Int64(k); lock.unlock() }
    package var total: Int64 { lock.lock(); defer { lock.unlock() }; return n }
    /// Sets part `i` (one stream's progress) and returns the sum of all parts.
    package func set(_ i: Int, _ v: Int64) -> Int64 {
        lock.lock()
        defer { lock.unlock() }
        parts[i] = v
        return parts.values.reduce(0, +)
    }
}

/// Chunk names already forwarded during one backup.
final class SentChunks: @unchecked Sendable {
    private let lock = NSLock()
    private var names = Set<String>()
    /// True the first time a name is seen.
    package func insert(_ name: String) -> Bool { lock.lock(); defer { lock.unlock() }; return names.insert(name).inserted }
}

/// Bounded queues from one producer thread to several consumer threads. The producer blocks
/// while a live consumer's queue is full; a consumer that died takes nothing more.
package final class FanOut: @unchecked Sendable {
    package final class Consumer: RecordFeed, @unchecked Sendable {
        private let cond = NSCondition()
        private var queue: [[UInt8]] = []
        private var head = 0
        private var bytes = 0
        private var finished = false
        private var dead = false
        private var killed = false
        package let capacity: Int

        package init(capacity: Int) { self.capacity = capacity }

        /// Called by the consumer's session loop (a driver's put, a restore job's input).
        package func next() -> FeedItem {
            cond.lock()
            defer { cond.unlock() }
            if head < queue.count {
                let r = queue[head]
                queue[head] = []
                head += 1
                bytes -= r.count
                if head > 1024 { queue.removeFirst(head); head = 0 }
                cond.broadcast()
                return .record(r)
            }
            if killed { return .abandoned }
            if finished { dead = true; return .end }
            return dead ? .end : .later
        }

        package func enqueue(_ r: [UInt8]) {
            cond.lock()
            defer { cond.unlock() }
            while bytes + r.count > capacity && !dead && bytes > 0 { _ = cond.wait(until: Date().addingTimeInterval(1)) }
            if dead { return }
            queue.append(r)
            bytes += r.count
        }

        package func finish() {
            cond.lock()
            finished = true
            cond.broadcast()
            cond.unlock()
        }

        package func abandon() { kill() }

        package func kill() {
            cond.lock()
            dead = true
            killed = true
            queue.removeAll()
            head = 0
            bytes = 0
            cond.broadcast()
            cond.unlock()
        }
    }

    private let consumers: [String: Consumer]

    package init(names: [String], capacity: Int) {
        consumers = Dictionary(uniqueKeysWithValues: names.map { ($0, Consumer(capacity: capacity)) })
    }

    package func consumer(_ name: String) -> Consumer { consumers[name]! }
    package func enqueue(_ r: [UInt8], to name: String) { consumers[name]?.enqueue(r) }
    package func finish() { consumers.values.forEach { $0.finish() } }
}
