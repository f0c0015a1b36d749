// A storage replica in an S3-compatible bucket (issue 18): the repository's objects under
// `PREFIX/ENV/` with the names RepositoryLayout builds, written and read over the S3 REST API
// with Signature Version 4 (S3Signing). Small and owned here: no SDK. Requests go through
// Foundation's URLSession (libcurl on its own threads, never Swift's cooperative pool);
// 5xx, 503 SlowDown and dropped connections are retried with backoff; every other answer is
// an error naming the node, the object and the store's own code.
//
// What a bucket cannot do as an SSH node does: hold a lock that dies with its holder. Locks
// here are lease objects (docs/storage-format.md, "Buckets"): written with `If-None-Match: *`
// so that one writer wins, carrying an owner and an expiry, renewed while held; a crashed
// holder's lease expires by itself (never a manual unlock), and a holder that cannot renew
// in time reports the lock lost (`isHeld` false) instead of going on silently.
import AgentProtocol
@preconcurrency import Crypto
import Fleet
import Foundation
import Repository
import Support
import Synchronization

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// Where a bucket is and how to address it.
package struct S3Location: Sendable, Equatable {
    /// `http(s)://host[:port]` of the store.
    package var endpoint: String
    package var bucket: String
    package var region: String
    /// A folder inside the bucket ("" for its top); no leading or trailing slash.
    package var prefix: String
    /// Path-style (`endpoint/bucket/key`, what self-hosted stores speak) or virtual-host
    /// (`bucket.host/key`).
    package var pathStyle: Bool

    package init(endpoint: String, bucket: String, region: String = "us-east-1", prefix: String = "", pathStyle: Bool = true) {
        self.endpoint = endpoint.hasSuffix("/") ? String(endpoint.dropLast()) : endpoint
        self.bucket = bucket
        self.region = region
        self.prefix = prefix.trimmingCharacters(in: CharacterSet(charactersIn: "/"))
        self.pathStyle = pathStyle
    }

    /// The URL of `key` (nil: the bucket itself), and the Host header it is signed with.
    package func url(_ key: String?, query: [(String, String)]) -> (url: String, host: String, path: String) {
        let scheme = endpoint.hasPrefix("https://") ? "https://" : "http://"
        let host = String(endpoint.dropFirst(scheme.count))
        let encodedKey = key.map { "/" + SigV4.encode($0, keepSlash: true) } ?? "/"
        let path = pathStyle ? "/\(SigV4.encode(bucket))\(key == nil ? "" : encodedKey)" : encodedKey
        let h = pathStyle ? host : "\(bucket).\(host)"
        let q = query.map { "\(SigV4.encode($0.0))=\(SigV4.encode($0.1))" }.joined(separator: "&")
        return ("\(scheme)\(h)\(path)\(q.isEmpty ? "" : "?" + q)", h, path.isEmpty ? "/" : path)
    }
}

/// An S3 answer: status, body, headers (lowercased names).
struct S3Answer: Sendable {
    var status: Int
    var body: Data
    var headers: [String: String]
}

package final class S3Bucket: StorageDriver, @unchecked Sendable {
    package let name: String
    package let location: S3Location
    /// The repository's folder in the bucket: the location's prefix, then the environment.
    package let repository: String
    let credentials: S3Credentials
    let session: URLSession
    /// Objects above this many bytes go up in parts of this size (multipart upload; 5 MiB at least).
    package let multipartThreshold: Int
    /// How long a lease lasts without renewal, and how often it is renewed.
    package let leaseSeconds: Double

    /// The time requests are signed with (a test sets it off to see a skewed clock refused).
    let clock: @Sendable () -> Date

    package init(
        name: String, location: S3Location, credentials: S3Credentials, environment: String?, multipartThreshold: Int = 16 << 20,
        leaseSeconds: Double = 60, timeout: Double = 30, clock: @escaping @Sendable () -> Date = { Date() }
    ) {
        self.clock = clock
        self.name = name
        self.location = location
        self.credentials = credentials
        self.repository = [location.prefix, environment ?? ""].filter { !$0.isEmpty }.joined(separator: "/")
        // S3 refuses parts under 5 MiB (but the last).
        self.multipartThreshold = max(multipartThreshold, 5 << 20)
        self.leaseSeconds = leaseSeconds
        let c = URLSessionConfiguration.ephemeral
        c.timeoutIntervalForRequest = timeout
        c.httpShouldSetCookies = false
        c.urlCache = nil
        session = URLSession(configuration: c)
    }

    /// The driver of an inventory's bucket node (its keys read now).
    package convenience init(node: String, _ b: BucketSpec, environment: String?, timeout: Double = 30) throws(StowageError) {
        let keys = try b.keys(node: node)
        self.init(
            name: node, location: S3Location(endpoint: b.endpoint, bucket: b.bucket, region: b.region, prefix: b.prefix, pathStyle: b.pathStyle),
            credentials: S3Credentials(accessKey: keys.access, secretKey: keys.secret), environment: environment,
            leaseSeconds: Double(b.leaseSeconds), timeout: timeout)
    }

    func key(_ object: String) -> String { repository.isEmpty ? object : "\(repository)/\(object)" }

    // MARK: - Requests

    /// One signed request, retried on 5xx, throttling and dropped connections (up to 5 tries,
    /// 0.2 s doubling); any other answer is returned as it is.
    func send(
        _ method: String, _ key: String?, query: [(String, String)] = [], body: Data = Data(), headers extra: [(String, String)] = []
    ) async throws(StowageError) -> S3Answer {
        let payload = body.isEmpty ? SigV4.emptyHash : SigV4.hex(SHA256.hash(data: body))
        var lastError = ""
        for attempt in 0..<5 {
            if attempt > 0 { try? await Task.sleep(for: .milliseconds(200 << (attempt - 1))) }
            let now = clock()
            let (url, host, path) = location.url(key, query: query)
            let headers = [("host", host), ("x-amz-date", SigV4.amzDate(now)), ("x-amz-content-sha256", payload)] + extra
            let signed = S3Request(method: method, path: path, query: query, headers: headers, payloadHash: payload)
            var r = URLRequest(url: URL(string: url)!)
            r.httpMethod = method
            for (k, v) in headers where k != "host" { r.setValue(v, forHTTPHeaderField: k) }
            r.setValue(SigV4.authorization(signed, credentials: credentials, date: now, region: location.region), forHTTPHeaderField: "Authorization")
            if !body.isEmpty || method == "PUT" || method == "POST" { r.httpBody = body }
            do {
                let (data, response) = try await session.data(for: r)
                let http = response as? HTTPURLResponse
                var h: [String: String] = [:]
                for (k, v) in http?.allHeaderFields ?? [:] { h[String(describing: k).lowercased()] = String(describing: v) }
                let answer = S3Answer(status: http?.statusCode ?? 0, body: data, headers: h)
                if answer.status >= 500 {
                    // A HEAD's 503 has no body: 503 is what a throttling store answers.
                    lastError = "HTTP \(answer.status) \(Self.code(data) ?? (answer.status == 503 ? "SlowDown" : ""))"
                    continue
                }
                return answer
            } catch {
                lastError = (error as? URLError).map { "\($0.code)" } ?? "\(error)"
                if (error as? URLError)?.code == .cancelled { break }
            }
        }
        throw StowageError(
            .nodeUnreachable, "\(name) (bucket \(location.bucket) at \(location.endpoint)): \(method) \(key ?? "/") failed after 5 tries: \(lastError)",
            hint: "is the store up, and is the endpoint right? stowage agent check tells", retryable: true)
    }

    /// The store's error code in an XML error body (`<Code>NoSuchBucket</Code>`).
    static func code(_ body: Data) -> String? {
        let text = String(decoding: body, as: UTF8.self)
        guard let a = text.range(of: "<Code>"), let b = text.range(of: "</Code>", range: a.upperBound..<text.endIndex) else { return nil }
        return String(text[a.upperBound..<b.lowerBound])
    }

    /// An answer that is not what was wanted, as the operator's error.
    func failure(_ a: S3Answer, _ what: String) -> StowageError {
        // A HEAD's refusal has no body: its status says it.
        let code = Self.code(a.body) ?? (a.status == 403 ? "AccessDenied" : "HTTP \(a.status)")
        let (status, hint): (ExitStatus, String) =
            switch code {
            case "InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied":
                (.credentialsRejected, "check access_key_file of node \(name): the store refuses these credentials")
            case "RequestTimeTooSkewed":
                (.credentialsRejected, "this host's clock is too far from the store's: SigV4 allows 15 minutes (check NTP)")
            case "NoSuchBucket":
                (.invalidInventory, "create the bucket \(location.bucket), or fix bucket: of node \(name)")
            default: (.remoteFailed, "the store's answer was \(a.status) \(code)")
            }
        return StowageError(status, "\(name) (bucket \(location.bucket)): \(what): \(code)", hint: hint)
    }

    // MARK: - StorageDriver

    package func put(_ objects: [StoredObject], replace: Bool) async throws(StowageError) -> PutResult {
        var result = PutResult(stored: 0, existed: 0, bytes: 0)
        for o in objects {
            if try await putOne(o.name, Data(o.bytes), replace: replace) {
                result.stored += 1
                result.bytes += Int64(o.bytes.count)
            } else {
                result.existed += 1
            }
        }
        return result
    }

    /// Writes one object; false when it was there already (and `replace` is not set). A
    /// committed object is never replaced by accident: the write is conditional
    /// (`If-None-Match: *`), and a store that ignores the condition is caught by the HEAD
    /// before it.
    func putOne(_ object: String, _ data: Data, replace: Bool) async throws(StowageError) -> Bool {
        guard ObjectRecord.isValidName(object) else {
            throw StowageError(.internalError, "\(name): '\(object)' is not a repository object name")
        }
        if !replace {
            let head = try await send("HEAD", key(object))
            if head.status == 200 {
                // As on an SSH node: a manifest is never replaced (a committed backup does not
                // change); a chunk is named by its content, so one of the same size is it.
                if object.hasPrefix(RepositoryLayout.backupsPrefix + "/") {
                    throw StowageError(.remoteFailed, "\(name): \(object) exists already; a committed backup is never overwritten")
                }
                if head.headers["content-length"].flatMap(Int.init) == data.count { return false }
            } else if head.status != 404 {
                throw failure(head, "looking for \(object)")
            }
        }
        if data.count > multipartThreshold { return try await putMultipart(object, data, replace: replace) }
        let a = try await send("PUT", key(object), body: data, headers: replace ? [] : [("if-none-match", "*")])
        if a.status == 412 { return false }
        guard a.status == 200 else { throw failure(a, "writing \(object)") }
        return true
    }

    /// A large object in parts of `multipartThreshold` bytes; an upload that fails is aborted
    /// (and one left by a crash is cleaned by `cleanUploads`).
    func putMultipart(_ object: String, _ data: Data, replace: Bool) async throws(StowageError) -> Bool {
        let start = try await send("POST", key(object), query: [("uploads", "")])
        guard start.status == 200, let id = Self.element("UploadId", start.body).first else { throw failure(start, "starting the upload of \(object)") }
        do throws(StowageError) {
            var parts: [String] = []
            var offset = 0
            while offset < data.count {
                let end = min(offset + multipartThreshold, data.count)
                let a = try await send(
                    "PUT", key(object), query: [("partNumber", "\(parts.count + 1)"), ("uploadId", id)], body: data.subdata(in: offset..<end))
                guard a.status == 200, let etag = a.headers["etag"] else { throw failure(a, "writing part \(parts.count + 1) of \(object)") }
                parts.append(etag)
                offset = end
            }
            let xml =
                "<CompleteMultipartUpload>"
                + parts.enumerated().map { "<Part><PartNumber>\($0.offset + 1)</PartNumber><ETag>\($0.element)</ETag></Part>" }.joined()
                + "</CompleteMultipartUpload>"
            let done = try await send("POST", key(object), query: [("uploadId", id)], body: Data(xml.utf8), headers: replace ? [] : [("if-none-match", "*")])
            if done.status == 412 { return false }
            guard done.status == 200, Self.code(done.body) == nil else { throw failure(done, "completing the upload of \(object)") }
            return true
        } catch {
            _ = try? await send("DELETE", key(object), query: [("uploadId", id)])
            throw error
        }
    }

    package func put(feed: any RecordFeed) async throws(StowageError) -> PutResult {
        var result = PutResult(stored: 0, existed: 0, bytes: 0)
        do throws(StowageError) {
            while true {
                switch feed.next() {
                case .record(let bytes):
                    let header: (name: String, size: Int, payload: Int)?
                    do throws(MalformedRecord) { header = try ObjectRecord.parseHeader(bytes, at: 0) } catch { header = nil }
                    guard let header, bytes.count == header.payload + header.size else {
                        throw StowageError(.internalError, "\(name): a malformed object record in the feed")
                    }
                    let r = try await put([StoredObject(name: header.name, bytes: Array(bytes[header.payload...]))], replace: false)
                    result.stored += r.stored
                    result.existed += r.existed
                    result.bytes += r.bytes
                case .later:
                    try? await Task.sleep(for: .milliseconds(2))
                case .end:
                    return result
                case .abandoned:
                    throw StowageError(.remoteFailed, "\(name): the backup's feed was cut; nothing of it is committed here", retryable: true)
                }
            }
        } catch {
            feed.abandon()
            throw error
        }
    }

    package func get(_ names: [String]) async throws(StowageError) -> (objects: [StoredObject], missing: [String]) {
        var objects: [StoredObject] = []
        var missing: [String] = []
        for n in names {
            let a = try await send("GET", key(n))
            switch a.status {
            case 200: objects.append(StoredObject(name: n, bytes: Array(a.body)))
            case 404: missing.append(n)
            default: throw failure(a, "reading \(n)")
            }
        }
        return (objects, missing)
    }

    package func list(prefix: String?) async throws(StowageError) -> [ListedObject] {
        let base = repository.isEmpty ? "" : repository + "/"
        // A prefix names a folder, as on an SSH node ("backups/sqldb": what is under it).
        let wanted = base + (prefix.map { $0 + "/" } ?? "")
        var found: [ListedObject] = []
        var token: String?
        repeat {
            var q = [("list-type", "2"), ("prefix", wanted)]
            if let token { q.append(("continuation-token", token)) }
            let a = try await send("GET", nil, query: q)
            guard a.status == 200 else { throw failure(a, "listing \(wanted)") }
            let keys = Self.element("Key", a.body), sizes = Self.element("Size", a.body)
            // Filtered here as well: some stores answer a prefix with its whole folder.
            for (k, s) in zip(keys, sizes) where k.hasPrefix(wanted) {
                let n = String(k.dropFirst(base.count))
                // Leases and multipart leftovers are the driver's, not the repository's.
                if !n.hasPrefix("locks/") { found.append(ListedObject(name: n, size: Int64(s) ?? 0)) }
            }
            token = Self.element("IsTruncated", a.body).first == "true" ? Self.element("NextContinuationToken", a.body).first : nil
        } while token != nil
        return found.sorted { $0.name < $1.name }
    }

    package func delete(_ names: [String]) async throws(StowageError) -> Int {
        var removed = 0
        for n in names {
            guard try await send("HEAD", key(n)).status == 200 else { continue }
            let a = try await send("DELETE", key(n))
            guard a.status == 204 || a.status == 200 else { throw failure(a, "deleting \(n)") }
            removed += 1
        }
        return removed
    }

    package func freeSpace() async throws(StowageError) -> FreeSpace? {
        // A bucket has no free space to tell; asking it anything proves it answers.
        let a = try await send("GET", nil, query: [("list-type", "2"), ("max-keys", "1")])
        guard a.status == 200 else { throw failure(a, "reaching the bucket") }
        return nil
    }

    package func prewarm(connections: Int) {}

    /// What `stowage agent check` reports of a bucket: it answers, the keys are accepted, the
    /// bucket is there, and an object can be written and removed (a probe beside the
    /// repository). Nil when all is well.
    package func check() async -> StowageError? {
        let probe = key(".stowage-check-\(hexString((0..<6).map { _ in UInt8.random(in: 0...255) }))")
        do throws(StowageError) {
            _ = try await freeSpace()
            let put = try await send("PUT", probe, body: Data("stowage check\n".utf8))
            guard put.status == 200 else { throw failure(put, "writing a probe object (the keys may read but not write)") }
            let del = try await send("DELETE", probe)
            guard del.status == 204 || del.status == 200 else { throw failure(del, "deleting the probe object (prune and repair need it)") }
            return nil
        } catch { return error }
    }

    /// Aborts multipart uploads under the repository that a crashed writer left behind.
    package func cleanUploads() async throws(StowageError) -> Int {
        let a = try await send("GET", nil, query: [("prefix", repository), ("uploads", "")])
        guard a.status == 200 else { return 0 }
        var aborted = 0
        for (k, id) in zip(Self.element("Key", a.body), Self.element("UploadId", a.body)) {
            if try await send("DELETE", k, query: [("uploadId", id)]).status == 204 { aborted += 1 }
        }
        return aborted
    }

    /// Every `<name>…</name>` value in an XML body, in order (S3's answers are flat enough).
    static func element(_ name: String, _ body: Data) -> [String] {
        let text = String(decoding: body, as: UTF8.self)
        var out: [String] = []
        var rest = text[...]
        while let a = rest.range(of: "<\(name)>"), let b = rest.range(of: "</\(name)>", range: a.upperBound..<rest.endIndex) {
            out.append(Self.unescape(String(rest[a.upperBound..<b.lowerBound])))
            rest = rest[b.upperBound...]
        }
        return out
    }

    static func unescape(_ s: String) -> String {
        s.replacing("&lt;", with: "<").replacing("&gt;", with: ">").replacing("&quot;", with: "\"").replacing("&apos;", with: "'")
            .replacing("&#34;", with: "\"").replacing("&amp;", with: "&")
    }

    // MARK: - Locks

    package func lock(layers: [String], owner: String, exclusive: Bool) async throws(StowageError) -> any StorageLockSession {
        var held: [String] = []
        do throws(StowageError) {
            // The repository lock: one exclusive lease, or one shared lease per holder; each
            // kind refuses while a live lease of the other is there.
            let tag = hexString((0..<8).map { _ in UInt8.random(in: 0...255) })
            let repoLease = exclusive ? "locks/repository-exclusive" : "locks/repository-shared-\(tag)"
            if let other = try await liveLeases(prefix: exclusive ? "locks/repository-" : "locks/repository-exclusive").first {
                throw StowageError(
                    .locked, "\(name): the repository is locked by \(other)", hint: "a lease ends when its holder ends, or \(Int(leaseSeconds)) s after it died"
                )
            }
            try await acquire(repoLease, owner: owner, tag: tag)
            held.append(repoLease)
            // Under the exclusive lease no one else writes here: part uploads a crashed
            // writer left behind are aborted now (they are never objects, never listed).
            if exclusive { _ = try? await cleanUploads() }
            for l in layers {
                let lease = "locks/layer-\(l)"
                try await acquire(lease, owner: owner, tag: tag)
                held.append(lease)
            }
            return LeaseSession(bucket: self, leases: held, owner: owner, tag: tag)
        } catch {
            for l in held { _ = try? await send("DELETE", key(l)) }
            throw error
        }
    }

    /// Live leases (not expired) whose keys start with `prefix`: their owners.
    func liveLeases(prefix: String) async throws(StowageError) -> [String] {
        let a = try await send("GET", nil, query: [("list-type", "2"), ("prefix", key(prefix))])
        guard a.status == 200 else { throw failure(a, "listing locks") }
        var owners: [String] = []
        for k in Self.element("Key", a.body) where k.hasPrefix(key(prefix)) {
            let g = try await send("GET", k)
            if g.status == 200, let lease = Lease.parse(g.body), lease.expires > Date() { owners.append(lease.owner) }
        }
        return owners
    }

    /// Writes the lease if none is there (or the one there has expired: it is removed first).
    func acquire(_ lease: String, owner: String, tag: String) async throws(StowageError) {
        for _ in 0..<2 {
            // Looked for first: not every store honours If-None-Match (rclone's does not).
            var current = try await send("GET", key(lease))
            if current.status == 404 {
                let body = Lease(owner: owner, expires: Date().addingTimeInterval(leaseSeconds), tag: tag).encoded
                let a = try await send("PUT", key(lease), body: body, headers: [("if-none-match", "*")])
                if a.status == 200 { return }
                guard a.status == 412 else { throw failure(a, "writing the lease \(lease)") }
                current = try await send("GET", key(lease))
            }
            if current.status == 200, let l = Lease.parse(current.body), l.expires > Date() {
                throw StowageError(
                    .locked, "\(name): \(lease.dropFirst(6)) is locked by \(l.owner)",
                    hint: "it ends with its holder's run, or \(Int(leaseSeconds)) s after the holder died")
            }
            // Expired (its holder died): take it away, then race for it once more.
            _ = try await send("DELETE", key(lease))
        }
        throw StowageError(.locked, "\(name): \(lease.dropFirst(6)) was taken by another holder meanwhile")
    }

    struct Lease: Sendable {
        var owner: String
        var expires: Date
        var tag: String
        var encoded: Data { Data("\(owner)\n\(expires.timeIntervalSince1970)\n\(tag)\n".utf8) }
        static func parse(_ d: Data) -> Lease? {
            let lines = String(decoding: d, as: UTF8.self).split(separator: "\n")
            guard lines.count >= 2, let t = Double(lines[1]) else { return nil }
            return Lease(owner: String(lines[0]), expires: Date(timeIntervalSince1970: t), tag: lines.count > 2 ? String(lines[2]) : "")
        }
    }

    /// Leases renewed every third of their life while held; `isHeld` turns false when a
    /// renewal fails and the lease may have expired.
    final class LeaseSession: StorageLockSession, @unchecked Sendable {
        let bucket: S3Bucket
        let leases: [String]
        let owner: String
        /// Written into each lease: which session's it is (owners may repeat).
        let tag: String
        let state = Mutex(State())
        struct State {
            var validUntil: Date
            var released = false
            var renewer: Task<Void, Never>?
            init() { validUntil = .distantPast }
        }

        init(bucket: S3Bucket, leases: [String], owner: String, tag: String) {
            self.bucket = bucket
            self.leases = leases
            self.owner = owner
            self.tag = tag
            let life = bucket.leaseSeconds
            state.withLock { $0.validUntil = Date().addingTimeInterval(life) }
            let task = Task { [weak self] in
                while !Task.isCancelled {
                    try? await Task.sleep(for: .seconds(life / 3))
                    guard let self, !Task.isCancelled else { return }
                    // A lease that may have lapsed is lost for good: another holder may have
                    // taken it over meanwhile, and a blind renewal would overwrite theirs. So
                    // renew only while a tenth of its life is left as margin for the request.
                    let start = Date()
                    guard self.state.withLock({ !$0.released && $0.validUntil > start.addingTimeInterval(life / 10) }) else { return }
                    let renewed = start.addingTimeInterval(life)
                    var ok = true
                    for l in leases {
                        let a = try? await bucket.send("PUT", bucket.key(l), body: Lease(owner: owner, expires: renewed, tag: tag).encoded)
                        if a?.status != 200 { ok = false }
                    }
                    // Counted from before the request: the store's copy says `renewed`, ours
                    // may only be shorter. A renewal that came too late does not revive it.
                    if ok { self.state.withLock { if $0.validUntil > Date() { $0.validUntil = renewed } } }
                }
            }
            state.withLock { $0.renewer = task }
        }

        var isHeld: Bool { state.withLock { !$0.released && $0.validUntil > Date() } }

        func release() async {
            let task = state.withLock { s -> Task<Void, Never>? in
                s.released = true
                return s.renewer
            }
            task?.cancel()
            // Removed even when the run was cancelled (a cancelled task's requests would be
            // cancelled too, leaving the leases to expire); a detached task does not inherit it.
            // A lease that lapsed may be another holder's by now: it is removed only if what
            // the store holds still carries this session's tag.
            let bucket = bucket, leases = leases, tag = tag
            let lapsed = state.withLock { $0.validUntil <= Date() }
            await Task.detached {
                for l in leases {
                    if lapsed {
                        guard let g = try? await bucket.send("GET", bucket.key(l)), g.status == 200, let there = Lease.parse(g.body),
                            there.tag == tag
                        else { continue }
                    }
                    _ = try? await bucket.send("DELETE", bucket.key(l))
                }
            }.value
        }
    }
}
