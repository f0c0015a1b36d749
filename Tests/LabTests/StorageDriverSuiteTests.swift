// One suite, every storage driver the lab has (restic's backend tests do the same): an SSH
// storage node, two independent SeaweedFS servers and rclone's S3 server. Each must keep the
// format's promises of StorageDriver: whole objects byte for byte (large ones in parts on a
// bucket), listings sorted with sizes, committed objects never replaced unless asked, deletes
// that count, a put fed record by record, and locks that exclude each other and end with
// their holder. Then what only a bucket can get wrong: credentials refused, a missing bucket,
// a store that is down; each a one-line error naming the node.
import AgentProtocol
import Foundation
import Support
import TestSupport
import Testing

@testable import Fleet
@testable import Remote
@testable import Storage

/// The lab's S3 stores (fixtures/lab/lab.sh), by node name.
let labS3Stores = [("sw1", "http://127.0.9.21:8333"), ("sw2", "http://127.0.9.22:8334"), ("rcl", "http://127.0.9.23:8335")]

/// The key pair the lab's stores accept.
func labS3Credentials() throws -> S3Credentials {
    let lines = try String(contentsOfFile: "\(Lab.dir)/secrets/s3-keys", encoding: .utf8).split(separator: "\n").map(String.init)
    return S3Credentials(accessKey: lines[0], secretKey: lines[1])
}

/// A bucket driver on a lab store, in a folder of its own; the bucket is made if missing.
func labBucket(_ node: String, _ endpoint: String, prefix: String, bucket: String = "stowage-lab", multipart: Int = 5 << 20) async throws -> S3Bucket {
    let b = S3Bucket(
        name: node, location: S3Location(endpoint: endpoint, bucket: bucket, prefix: prefix), credentials: try labS3Credentials(), environment: "env",
        multipartThreshold: multipart, leaseSeconds: 6)
    let made = try await b.send("PUT", nil)
    #expect([200, 409].contains(made.status), "\(node): creating the bucket: \(made.status) \(String(decoding: made.body, as: UTF8.self))")
    return b
}

/// The fault proxy in front of a lab store (Tests/faults/s3_throttling_proxy.py), once it listens.
func startS3Proxy(port: Int, upstream: String, _ args: [String], throttle: Int = 0) async throws -> BackgroundProcess {
    let p = try BackgroundProcess(
        "/usr/bin/python3", [Repo.path("Tests/faults/s3_throttling_proxy.py"), "127.0.0.1", "\(port)", upstream, "\(throttle)"] + args,
        output: "\(Lab.dir)/work/proxy-\(port)-\(UUID().uuidString.prefix(4)).log")
    for _ in 0..<100 where !p.output.contains("ready") { try await Task.sleep(for: .milliseconds(50)) }
    return p
}

private func bytes(_ n: Int, _ seed: UInt8) -> [UInt8] { (0..<n).map { UInt8(truncatingIfNeeded: $0 &* 31) ^ seed } }

/// Records handed over one at a time, as a backup's chunk stream does.
private final class ArrayFeed: RecordFeed, @unchecked Sendable {
    private let lock = NSLock()
    private var items: [[UInt8]]
    init(_ objects: [StoredObject]) { items = objects.map { ObjectRecord.encode(name: $0.name, bytes: $0.bytes) } }
    func next() -> FeedItem {
        lock.lock()
        defer { lock.unlock() }
        return items.isEmpty ? .end : .record(items.removeFirst())
    }
    func abandon() {}
}

extension LabSuites {
    @Suite struct StorageDrivers {
        /// Each driver in a fresh place of its own.
        static func drivers() async throws -> [any StorageDriver] {
            let inv = try Inventory.load(path: Lab.inventory)
            _ = try await AgentInstaller.install(try inv.agentNode(named: "st1"), try AgentBinary.locate())
            var t = SSHTarget(
                node: "st1", host: "127.0.9.1", port: Lab.sshPort, user: "root", identity: "\(Lab.dir)/ssh/id_ed25519",
                knownHosts: "\(Lab.dir)/ssh/known_hosts")
            t.connectTimeout = 3
            var all: [any StorageDriver] = [
                SSHStorageNode(target: t, agent: try AgentBinary.locate(), repository: "\(Lab.dir)/storage/st1/suite-\(UUID().uuidString)")
            ]
            let prefix = "suite-\(UUID().uuidString.prefix(8).lowercased())"
            for (node, endpoint) in labS3Stores { all.append(try await labBucket(node, endpoint, prefix: prefix)) }
            return all
        }

        @Test func objectsGoInWholeAndComeBackByteForByte() async throws {
            for d in try await Self.drivers() {
                var objects = (0..<12).map { i in StoredObject(name: "chunks/\(String(format: "%02x", i))/chunk\(i)", bytes: bytes(i * 90_000 + 1, UInt8(i))) }
                // Larger than a bucket's part size here (5 MiB): it goes up in three parts.
                objects.append(StoredObject(name: "chunks/ff/large", bytes: bytes(12_000_000, 7)))
                objects.append(StoredObject(name: "backups/sqldb/2026-11-21T030000Z-auto", bytes: Array("manifest".utf8)))
                let put = try await d.put(objects)
                #expect(put.stored == 14 && put.existed == 0, "\(d.name): \(put)")
                let listed = try await d.list()
                #expect(listed.map(\.name) == objects.map(\.name).sorted(), "\(d.name): \(listed.map(\.name))")
                #expect(listed.first { $0.name == "chunks/ff/large" }?.size == 12_000_000, "\(d.name)")
                #expect(try await d.list(prefix: "backups").map(\.name) == ["backups/sqldb/2026-11-21T030000Z-auto"], "\(d.name)")
                let folder = try await d.list(prefix: "backups/sqldb"), partial = try await d.list(prefix: "backups/sql")
                #expect(folder.count == 1 && partial.isEmpty, "\(d.name): \(partial)")
                let (got, missing) = try await d.get(objects.map(\.name) + ["chunks/00/none"])
                #expect(missing == ["chunks/00/none"], "\(d.name)")
                #expect(
                    Dictionary(uniqueKeysWithValues: got.map { ($0.name, $0.bytes) }) == Dictionary(uniqueKeysWithValues: objects.map { ($0.name, $0.bytes) }),
                    "\(d.name)")
                #expect(try await d.delete(["chunks/00/chunk0", "chunks/01/chunk1", "chunks/00/none"]) == 2, "\(d.name)")
                #expect(try await d.list(prefix: "chunks").count == 11, "\(d.name)")
            }
        }

        @Test func committedObjectsAreNeverReplacedUnlessAsked() async throws {
            for d in try await Self.drivers() {
                let name = "backups/sqldb/2026-11-22T030000Z-auto"
                #expect(try await d.put([StoredObject(name: name, bytes: Array("first".utf8))]).stored == 1)
                // A committed manifest: refused, and left as it was.
                do {
                    _ = try await d.put([StoredObject(name: name, bytes: Array("second".utf8))])
                    Issue.record("\(d.name): a committed manifest was written over")
                } catch {
                    #expect(error.message.contains("exists already; a committed backup is never overwritten"), "\(d.name): \(error.message)")
                }
                // A chunk already there (same name, same size) is skipped.
                let chunk = StoredObject(name: "chunks/ab/" + String(repeating: "ab", count: 32), bytes: bytes(1000, 1))
                #expect(try await d.put([chunk]).stored == 1)
                let again = try await d.put([chunk])
                #expect(again.stored == 0 && again.existed == 1, "\(d.name): \(again)")
                #expect(try await d.get([name]).objects.first?.bytes == Array("first".utf8), "\(d.name)")
                // Repair replaces with a copy it authenticated.
                #expect(try await d.put([StoredObject(name: name, bytes: Array("repaired".utf8))], replace: true).stored == 1)
                #expect(try await d.get([name]).objects.first?.bytes == Array("repaired".utf8), "\(d.name)")
            }
        }

        @Test func aFedPutStoresEveryRecord() async throws {
            for d in try await Self.drivers() {
                let objects = (0..<30).map { i in StoredObject(name: "chunks/\(String(format: "%02x", i))/fed\(i)", bytes: bytes(20_000 + i, UInt8(i))) }
                let r = try await d.put(feed: ArrayFeed(objects))
                #expect(r.stored == 30 && r.bytes == Int64(objects.map(\.bytes.count).reduce(0, +)), "\(d.name): \(r)")
                #expect(try await d.list(prefix: "chunks").count == 30, "\(d.name)")
            }
        }

        @Test func locksExcludeEachOtherAndEndWithTheirHolder() async throws {
            for d in try await Self.drivers() {
                let first = try await d.lock(layers: ["sqldb"], owner: "test one", exclusive: false)
                #expect(first.isHeld, "\(d.name)")
                await #expect(throws: StowageError.self, "\(d.name): the layer is taken") {
                    _ = try await d.lock(layers: ["sqldb"], owner: "test two", exclusive: false)
                }
                do {
                    _ = try await d.lock(layers: [], owner: "prune", exclusive: true)
                    Issue.record("\(d.name): an exclusive repository lock was granted beside a shared one")
                } catch {
                    let e = error
                    #expect(e.status == .locked && e.message.contains(d.name), "\(d.name): \(e.message)")
                }
                // Another layer is free.
                let other = try await d.lock(layers: ["cache"], owner: "test three", exclusive: false)
                await other.release()
                await first.release()
                #expect(!first.isHeld)
                let again = try await d.lock(layers: ["sqldb"], owner: "test four", exclusive: true)
                #expect(again.isHeld, "\(d.name)")
                await again.release()
            }
        }

        @Test func aBucketsRefusalsAreOneLineNamingTheNode() async throws {
            let prefix = "refusals-\(UUID().uuidString.prefix(8).lowercased())"
            for (node, endpoint) in labS3Stores {
                // Wrong credentials: refused, not retried, named.
                let wrong = S3Bucket(
                    name: node, location: S3Location(endpoint: endpoint, bucket: "stowage-lab", prefix: prefix),
                    credentials: S3Credentials(accessKey: try labS3Credentials().accessKey, secretKey: "not-the-secret"), environment: "env")
                do {
                    _ = try await wrong.put([StoredObject(name: "chunks/aa/x", bytes: [1])])
                    Issue.record("\(node): a wrong secret was accepted")
                } catch {
                    let e = error
                    #expect(e.status == .credentialsRejected && e.message.hasPrefix("\(node) (bucket stowage-lab)"), "\(node): \(e.message)")
                    #expect(!e.message.contains("not-the-secret") && !e.message.contains("\n"), "\(e.message)")
                }
                // A bucket that is not there.
                let missing = S3Bucket(
                    name: node, location: S3Location(endpoint: endpoint, bucket: "no-such-bucket-here", prefix: prefix), credentials: try labS3Credentials(),
                    environment: "env")
                do {
                    _ = try await missing.list()
                    Issue.record("\(node): listing a missing bucket succeeded")
                } catch {
                    let e = error
                    #expect(e.message.contains("NoSuchBucket") && e.hint?.contains("no-such-bucket-here") == true, "\(node): \(e.message)")
                }
            }
            // A clock an hour off: the stores that check the request's time refuse it, and the
            // error says what to fix (SeaweedFS checks; rclone's server does not).
            for (node, endpoint) in labS3Stores where node.hasPrefix("sw") {
                let skewed = S3Bucket(
                    name: node, location: S3Location(endpoint: endpoint, bucket: "stowage-lab", prefix: prefix), credentials: try labS3Credentials(),
                    environment: "env", clock: { Date().addingTimeInterval(3600) })
                do {
                    _ = try await skewed.list()
                    Issue.record("\(node): a request signed an hour ahead was accepted")
                } catch {
                    #expect(error.status == .credentialsRejected && error.hint?.contains("clock") == true, "\(node): \(error.message) \(error.hint ?? "")")
                }
            }
            // A throttling store (503 SlowDown): a few are waited out; a store that keeps
            // refusing fails the run, naming the node and the code, and leaves nothing behind.
            for (limit, succeeds) in [(3, true), (50, false)] {
                let port = API.freePort(20000...24999)
                let proxy = try await startS3Proxy(port: port, upstream: "127.0.9.21:8333", [], throttle: limit)
                defer { proxy.signal(SIGKILL) }
                let throttled = S3Bucket(
                    name: "sw1", location: S3Location(endpoint: "http://127.0.0.1:\(port)", bucket: "stowage-lab", prefix: prefix),
                    credentials: try labS3Credentials(), environment: "throttled-\(limit)")
                let direct = S3Bucket(
                    name: "sw1", location: S3Location(endpoint: "http://127.0.9.21:8333", bucket: "stowage-lab", prefix: prefix),
                    credentials: try labS3Credentials(),
                    environment: "throttled-\(limit)")
                let object = StoredObject(name: "chunks/cd/" + String(repeating: "cd", count: 32), bytes: bytes(5000, 3))
                do {
                    let r = try await throttled.put([object])
                    #expect(succeeds && r.stored == 1, "\(limit): \(r)")
                    #expect(try await direct.get([object.name]).objects.first?.bytes == object.bytes)
                } catch {
                    #expect(
                        !succeeds && error.status == .nodeUnreachable && error.message.contains("SlowDown") && error.message.hasPrefix("sw1 (bucket"),
                        "\(limit): \(error.message)")
                    #expect(try await direct.list().isEmpty)
                }
            }
            // A store that is down: retried, then unreachable, named.
            let down = S3Bucket(
                name: "sw9", location: S3Location(endpoint: "http://127.0.9.29:8333", bucket: "stowage-lab"), credentials: try labS3Credentials(),
                environment: "env", timeout: 2)
            do {
                _ = try await down.get(["chunks/aa/x"])
                Issue.record("a store that is down answered")
            } catch {
                let e = error
                #expect(
                    e.status == .nodeUnreachable && e.retryable && e.message.hasPrefix("sw9 (bucket stowage-lab at http://127.0.9.29:8333)"), "\(e.message)")
            }
        }
    }
}
