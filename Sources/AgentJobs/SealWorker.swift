// The chunk loop's second thread: it compresses, encrypts and writes the chunks the loop has
// cut, in order, while the loop goes on reading the dump tool's output, hashing and cutting.
// Before it, the dump tool stopped whenever the loop sealed or waited on the coordinator
// (its pipe full); now reading and sealing overlap. One worker, not one per core: on a
// database node the dump tool and the database itself want the other cores, and records
// must leave in stream order anyway.
import AgentProtocol
@preconcurrency import Crypto
import FoundationEssentials
import Repository

#if canImport(Glibc)
import Glibc
#endif

/// A bounded first-in first-out queue between two threads (pthread mutex and conditions:
/// the agent is a static binary with no runtime of its own for this).
final class BlockingQueue<Element>: @unchecked Sendable {
    // Taken items leave the array at once: one kept behind a moving head held its chunk's
    // bytes (a backup's agent peaked at 200 MiB with 64 of them).
    private var items: [Element] = []
    private var closed = false
    private let capacity: Int
    private var mutex = pthread_mutex_t()
    private var changed = pthread_cond_t()

    init(capacity: Int) {
        self.capacity = capacity
        pthread_mutex_init(&mutex, nil)
        pthread_cond_init(&changed, nil)
    }

    deinit {
        pthread_cond_destroy(&changed)
        pthread_mutex_destroy(&mutex)
    }

    /// Waits for room; false once the queue is closed (the item is dropped).
    @discardableResult
    func put(_ item: Element) -> Bool {
        pthread_mutex_lock(&mutex)
        defer { pthread_mutex_unlock(&mutex) }
        while !closed && items.count >= capacity { pthread_cond_wait(&changed, &mutex) }
        guard !closed else { return false }
        items.append(item)
        pthread_cond_broadcast(&changed)
        return true
    }

    /// The next item, waiting for one if `wait`; nil when there is none (closed and empty,
    /// or empty and not waiting).
    func take(wait: Bool = true) -> Element? {
        pthread_mutex_lock(&mutex)
        defer { pthread_mutex_unlock(&mutex) }
        while wait && !closed && items.isEmpty { pthread_cond_wait(&changed, &mutex) }
        guard !items.isEmpty else { return nil }
        // Queues here hold a few items: removing the first costs nothing worth a ring.
        let item = items.removeFirst()
        pthread_cond_broadcast(&changed)
        return item
    }

    /// No more puts; takes return what is left (nothing, if `discarding`), then nil.
    func close(discarding: Bool = false) {
        pthread_mutex_lock(&mutex)
        closed = true
        if discarding { items.removeAll() }
        pthread_cond_broadcast(&changed)
        pthread_mutex_unlock(&mutex)
    }
}

/// A thread running `body` once; `join` waits for its end.
final class WorkerThread: @unchecked Sendable {
    private var thread = pthread_t()
    private final class Body { let run: () -> Void; init(_ run: @escaping () -> Void) { self.run = run } }

    init(_ body: @escaping @Sendable () -> Void) {
        let context = Unmanaged.passRetained(Body(body)).toOpaque()
        let rc = pthread_create(
            &thread, nil,
            { p in
                Unmanaged<Body>.fromOpaque(p!).takeRetainedValue().run()
                return nil
            }, context)
        precondition(rc == 0, "pthread_create: \(rc)")
    }

    func join() { pthread_join(thread, nil) }
}

/// Chunks to seal and write, in; their sealed sizes (or -1: the output closed), out, in the
/// same order.
final class SealWorker: @unchecked Sendable {
    struct Piece { let id: String; let plain: [UInt8] }

    private let work: BlockingQueue<Piece>
    private let done = BlockingQueue<Int>(capacity: .max)
    private var thread: WorkerThread?

    /// `depth`: chunks cut and waiting to be sealed, at most (each up to a maximum chunk);
    /// `nice`: the thread's priority (nil: the agent's).
    init(key: SymmetricKey, zstdLevel: Int32, output: Int32, depth: Int = 2, nice: Int32? = nil) {
        let work = BlockingQueue<Piece>(capacity: depth)
        let done = self.done
        self.work = work
        thread = WorkerThread {
            if let nice { lowerThreadPriority(to: nice) }
            var failed = false
            while let p = work.take() {
                // After a failed write the rest is only acknowledged: the loop stops at the
                // first -1 it reads.
                guard !failed else { done.put(-1); continue }
                let sealed = p.plain.withUnsafeBytes { Envelope.seal($0, key: key, aad: p.id, zstdLevel: zstdLevel) }
                let record = ObjectRecord.encode(name: RepositoryLayout.chunk(p.id), bytes: sealed)
                if writeAll(output, record) {
                    done.put(sealed.count)
                } else {
                    failed = true
                    done.put(-1)
                }
            }
        }
    }

    /// Queues a chunk, waiting while `depth` are queued already.
    func seal(_ piece: Piece) { work.put(piece) }

    /// The next chunk's sealed size, in order: waiting for it, or nil if not yet sealed.
    func next(wait: Bool) -> Int? { done.take(wait: wait) }

    /// Ends the thread once what is queued is written; `discarding` (the loop failed or was
    /// cancelled): once the chunk being written, if any, is.
    func finish(discarding: Bool = false) {
        work.close(discarding: discarding)
        thread?.join()
        thread = nil
    }

    deinit { finish(discarding: true) }
}
