// The wire between coordinator and agent: every message survives a round trip through its
// JSON line, secrets are typed (and base64 on the wire under fixed names), an engine the
// agent does not know is refused, and frames and object records have the layout
// docs/agent-protocol.md describes.
import AgentProtocol
import Foundation
import Testing

@Suite struct WireTests {
    func roundTrip<T: Codable & Equatable>(_ v: T) throws -> T {
        try JSONDecoder().decode(T.self, from: JSONEncoder().encode(v))
    }

    @Test func aJobWithEveryFieldRoundTrips() throws {
        let job = AgentJob(type: .chunk, bytes: 7, command: ["cat", "x"], tools: ["psql"], path: "/",
                           secrets: JobSecrets(dataKey: Data(repeating: 1, count: 32), idKey: Data(repeating: 2, count: 32),
                                               chunkerSeed: Data([3, 4]), dbPassword: "pw"),
                           root: "/srv", names: ["a"], prefix: "chunks", owner: "me", chunkSizes: [1, 2, 4], zstdLevel: 3,
                           exclusive: true,
                           database: DatabaseAccess(engine: .mysql, host: "h", port: 3306, user: "u", fromReplica: true, cluster: false,
                                                    flush: true, keepRoles: ["r"]),
                           replace: true)
        #expect(try roundTrip(job) == job)
        for kind in [AgentJob.Kind.check, .sink, .source, .echo, .put, .get, .list, .delete, .lock, .chunk, .restore] {
            #expect(try roundTrip(AgentJob(type: kind)).type == kind)
        }
    }

    @Test func secretsAreBase64UnderTheirNamesAndTheKeysMustBe32Bytes() throws {
        let s = JobSecrets(dataKey: Data(repeating: 0xAB, count: 32), idKey: Data(repeating: 0xCD, count: 32), chunkerSeed: Data([1]),
                           dbPassword: "p")
        let json = try JSONSerialization.jsonObject(with: JSONEncoder().encode(s)) as? [String: String]
        #expect(json?["dataKey"] == Data(repeating: 0xAB, count: 32).base64EncodedString())
        #expect(json?["idKey"] == Data(repeating: 0xCD, count: 32).base64EncodedString())
        #expect(json?["chunkerSeed"] == "AQ==")
        #expect(json?["dbPassword"] == "p")
        #expect(s.keys?.data == [UInt8](repeating: 0xAB, count: 32))
        #expect(JobSecrets(dataKey: Data(repeating: 1, count: 16), idKey: Data(repeating: 2, count: 32)).keys == nil)
        #expect(JobSecrets(dbPassword: "x").keys == nil)
    }

    @Test func anUnknownEngineOrJobKindIsRefused() {
        let badEngine = #"{"type":"restore","database":{"engine":"oracle","host":"h","port":1}}"#
        #expect(throws: DecodingError.self) { try JSONDecoder().decode(AgentJob.self, from: Data(badEngine.utf8)) }
        let badKind = #"{"type":"format-disk"}"#
        #expect(throws: DecodingError.self) { try JSONDecoder().decode(AgentJob.self, from: Data(badKind.utf8)) }
        // Fields this agent does not know are ignored (a newer coordinator's additions).
        let extra = #"{"type":"check","somethingNew":1}"#
        #expect((try? JSONDecoder().decode(AgentJob.self, from: Data(extra.utf8)))?.type == .check)
    }

    @Test func eventsRoundTrip() throws {
        var e = AgentEvent(event: .result)
        e.stored = 3
        e.existed = 1
        e.bytes = 99
        e.missing = ["x"]
        #expect(try roundTrip(e) == e)
        #expect(try roundTrip(AgentEvent.hello(pid: 42)) == AgentEvent.hello(pid: 42))
    }

    @Test func framesAndRecordsHaveTheirDocumentedLayout() {
        #expect(Frame.header(0x01020304) == [1, 2, 3, 4])
        #expect(Frame.end == [0, 0, 0, 0])
        let r = ObjectRecord.encode(name: "ab", bytes: [9, 8])
        #expect(r == [0, 0, 0, 2, 0x61, 0x62, 0, 0, 0, 0, 0, 0, 0, 2, 9, 8])
        #expect(ObjectRecord.isValidName("chunks/ab/cd"))
        for bad in ["", "/abs", "a/../b", "..", "a//b", String(repeating: "x", count: ObjectRecord.maxName + 1)] {
            #expect(!ObjectRecord.isValidName(bad), "\(bad.prefix(20))")
        }
    }

    /// `ObjectRecord.readHeader` over bytes in memory.
    func header(_ bytes: [UInt8]) throws -> (name: String, size: Int)? {
        var p = 0
        return try ObjectRecord.readHeader { n in
            guard bytes.count - p >= n else { return nil }
            defer { p += n }
            return Array(bytes[p..<(p + n)])
        }
    }

    @Test func oneRecordReaderWithOneSetOfLimits() throws {
        let r = ObjectRecord.encode(name: "chunks/ab/x", bytes: [1, 2, 3])
        #expect(try header(r)?.name == "chunks/ab/x")
        #expect(try header(r)?.size == 3)
        #expect(try header([]) == nil)
        // Cut inside the header: a streaming reader's input ended; a buffered one waits.
        #expect(throws: RecordHeaderCut.self) { try header(Array(r.prefix(6))) }
        #expect(try ObjectRecord.parseHeader(Array(r.prefix(6)), at: 0) == nil)
        #expect(try ObjectRecord.parseHeader(r, at: 0)?.payload == 4 + 11 + 8)
        // Names of 0 or more than maxName bytes, and objects over maxSize, are malformed everywhere.
        #expect(throws: MalformedRecord.self) { try header(Frame.header(0) + [0, 0, 0, 0, 0, 0, 0, 0]) }
        #expect(throws: MalformedRecord.self) { try header(Frame.header(ObjectRecord.maxName + 1)) }
        let huge = ObjectRecord.header(name: "x", size: ObjectRecord.maxSize + 1)
        #expect(throws: MalformedRecord.self) { try header(huge) }
        #expect(throws: MalformedRecord.self) { try ObjectRecord.parseHeader(huge, at: 0) }
    }
}
