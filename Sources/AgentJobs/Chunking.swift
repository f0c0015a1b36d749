// The `chunk` job: the database node's half of a backup. The dump tool's output is cut
// into content-defined chunks, each compressed and encrypted here, so plaintext never
// leaves this node (docs/storage-format.md); sealing and writing run on a second thread
// (SealWorker.swift) while this one reads, hashes and cuts. Memory stays bounded: one buffer
// of two of the largest chunks plus one read, and two chunks waiting for the sealer.
import AgentProtocol
@preconcurrency import Crypto
import FoundationEssentials
import Repository

#if canImport(Glibc)
import Glibc
#endif

extension Session {
    func chunk(_ first: ChunkJob) throws -> AgentEvent {
        guard first.keysFollow == true else { return try chunk(first, source: nil) }
        // The dump starts now; it runs a pipe's worth ahead, then waits for the keys.
        let source = try dumpSource(first)
        let job: ChunkJob
        do {
            let line: [UInt8]?
            do { line = try readJobLine() } catch { throw JobFailure(exit: .badJob, code: "bad-job", message: "cannot read the keys line: \(error)") }
            guard let line else {
                throw JobFailure(
                    exit: .inputCut, code: "cancelled", message: "the coordinator closed the session before the keys came; \(source.label) stopped")
            }
            do { job = try JSONDecoder().decode(ChunkKeys.self, from: Data(line)).completing(first) } catch {
                throw JobFailure(exit: .badJob, code: "bad-job", message: "malformed keys line: \(error)")
            }
        } catch {
            source.cancel()
            throw error
        }
        return try chunk(job, source: source)
    }

    /// `source`: the dump, already started (else started here, once the job is checked).
    private func chunk(_ job: ChunkJob, source started: StreamSource?) throws -> AgentEvent {
        guard let k = job.secrets.keys, let seed = job.secrets.chunkerSeed else {
            started?.cancel()
            throw JobFailure(exit: .badJob, code: "bad-job", message: "a chunk job needs dataKey, idKey and chunkerSeed secrets")
        }
        let sizes = job.chunkSizes ?? [ChunkerParameters.standard.min, ChunkerParameters.standard.avg, ChunkerParameters.standard.max]
        guard sizes.count == 3, sizes[0] > 0, sizes[0] < sizes[1], sizes[1] < sizes[2], sizes[1] & (sizes[1] - 1) == 0, sizes[2] <= 64 << 20 else {
            started?.cancel()
            throw JobFailure(exit: .badJob, code: "bad-job", message: "chunkSizes must be [min, avg, max] with min < avg < max, avg a power of two")
        }
        let keys = RepositoryKeys(data: SymmetricKey(data: k.data), id: SymmetricKey(data: k.id), chunkerSeed: Array(seed))
        let chunker = Chunker(seed: keys.chunkerSeed, parameters: ChunkerParameters(min: sizes[0], avg: sizes[1], max: sizes[2]))
        // The source holds its private folder (credential files) until it is released.
        let source = try started ?? dumpSource(job)
        // After the dump tool has started: it keeps the priority the agent had.
        return try chunkStream(
            source, keys: keys, chunker: chunker, maxChunk: sizes[2], zstdLevel: Int32(job.zstdLevel ?? 3), nice: backupThreadNice)
    }

    /// The chunk loop: `source` cut, sealed and written as object records to `output`, a
    /// chunk event per chunk to `events`; a chunk seen before in this stream is announced
    /// again but not written twice. Anything readable on `control` (the session's stdin)
    /// stops the source: that is how the coordinator cancels. `nice`: the priority this thread
    /// and the sealer's take (`backupThreadNice`); nil keeps theirs.
    func chunkStream(
        _ source: StreamSource, keys: RepositoryKeys, chunker: Chunker, maxChunk: Int, zstdLevel level: Int32,
        control: Int32 = 0, output: Int32 = 1, nice: Int32? = nil, events: (AgentEvent) -> Void = Events.send
    ) throws -> AgentEvent {
        if let nice { lowerThreadPriority(to: nice) }
        let readSize = 1 << 20
        // Room for two maximum-size chunks: the unread rest (under one maximum chunk) is
        // moved to the front once per maximum chunk consumed, not after nearly every read
        // (with room for one it moved about 3 bytes for every byte read).
        var buf = [UInt8](repeating: 0, count: 2 * maxChunk + readSize)
        var start = 0, end = 0, eof = false
        var total: Int64 = 0, chunks = 0
        var seen = Set<String>()
        var nextProgress = Self.progressEvery
        var fds = [pollfd(fd: source.pollFD, events: Int16(POLLIN), revents: 0), pollfd(fd: control, events: Int16(POLLIN), revents: 0)]

        // Sealing and writing happen on the worker's thread; the chunk events leave here,
        // in stream order, as each chunk's record has been written (a repeated chunk's event
        // waits for the chunks before it).
        let worker = SealWorker(key: keys.data, zstdLevel: level, output: output, nice: nice)
        defer { worker.finish(discarding: true) }
        var inFlight: [(id: String, bytes: Int, new: Bool)] = []
        var inFlightHead = 0

        func settle(wait: Bool) throws {
            while inFlightHead < inFlight.count {
                let c = inFlight[inFlightHead]
                var stored = 0
                if c.new {
                    guard let n = worker.next(wait: wait) else { return }
                    guard n >= 0 else {
                        source.cancel()
                        throw JobFailure(exit: .outputClosed, code: "output-closed", message: "stdout closed after \(chunks) chunks; \(source.label) stopped")
                    }
                    stored = n
                }
                var e = AgentEvent(event: .chunk)
                e.id = c.id
                e.bytes = Int64(c.bytes)
                e.stored = stored
                events(e)
                chunks += 1
                inFlightHead += 1
            }
            inFlight.removeAll(keepingCapacity: true)
            inFlightHead = 0
        }

        func emit(_ piece: UnsafeRawBufferPointer) throws {
            let id = keys.chunkID(piece)
            let new = seen.insert(id).inserted
            if new { worker.seal(SealWorker.Piece(id: id, plain: Array(piece))) }
            inFlight.append((id, piece.count, new))
            try settle(wait: false)
        }

        while true {
            // Cut every whole chunk the buffer holds. Until the stream ends, only cut once the
            // window holds a maximum-size chunk: then the cut is final after one scan, instead
            // of rescanning a growing window after every read.
            while end > start && (eof || end - start >= maxChunk) {
                let window = buf.withUnsafeBytes { UnsafeRawBufferPointer(rebasing: $0[start..<end]) }
                guard let n = chunker.cut(window, atEnd: eof) else { break }
                try buf.withUnsafeBytes { try emit(UnsafeRawBufferPointer(rebasing: $0[start..<(start + n)])) }
                start += n
            }
            if eof { break }
            // Make room for the next read.
            if start > 0 && buf.count - end < readSize {
                buf.withUnsafeMutableBytes { b in
                    _ = memmove(b.baseAddress!, b.baseAddress! + start, end - start)
                }
                end -= start
                start = 0
            }
            for i in fds.indices { fds[i].revents = 0 }
            if poll(&fds, 2, source.hasBuffered ? 0 : -1) < 0 { if errno == EINTR { continue }; break }
            if fds[1].revents != 0 {
                source.cancel()
                throw JobFailure(
                    exit: .inputCut, code: "cancelled", message: "the coordinator closed the session after \(total) bytes; \(source.label) stopped")
            }
            if fds[0].revents == 0 && !source.hasBuffered { continue }
            let room = min(readSize, buf.count - end)
            let n = buf.withUnsafeMutableBytes { source.read($0.baseAddress! + end, room) }
            if n <= 0 { eof = true; continue }
            buf.withUnsafeBytes {
                let got = UnsafeRawBufferPointer(rebasing: $0[end..<(end + n)])
                source.observe(got)
            }
            end += n
            total += Int64(n)
            if total >= nextProgress { events(.progress(total)); nextProgress += Self.progressEvery }
        }
        try settle(wait: true)
        worker.finish()
        let counts = try source.finish(total: total)
        // No hash of the whole stream: the chunk IDs, keyed hashes of every byte, cover it
        // (Repository/ChunkSequence.swift).
        var e = AgentEvent(event: .result)
        e.bytes = total
        e.stored = chunks
        e.counts = counts
        return e
    }
}
