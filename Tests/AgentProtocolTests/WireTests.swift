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

    static let secrets = JobSecrets(
        dataKey: Data(repeating: 1, count: 32), idKey: Data(repeating: 2, count: 32),
        chunkerSeed: Data([3, 4]), dbPassword: "pw")
    static let database = DatabaseAccess(
        engine: .mysql, host: "h", port: 3306, user: "u", fromReplica: true, cluster: false,
        flush: true, keepRoles: ["r"])
    /// One job of every kind, each with every field its payload has.
    static let everyKind: [AgentJob] = [
        .check(CheckJob(tools: ["psql"], path: "/")),
        .sink,
        .source(SourceJob(bytes: 7, command: ["cat", "x"], secrets: JobSecrets(dbPassword: "pw"))),
        .echo,
        .put(PutJob(root: "/srv", replace: true)),
        .get(GetJob(root: "/srv", names: ["a", "b"])),
        .list(ListJob(root: "/srv", prefix: "chunks")),
        .delete(DeleteJob(root: "/srv", names: ["a"])),
        .lock(LockJob(root: "/srv", layers: ["sqldb"], owner: "me", exclusive: true)),
        .chunk(ChunkJob(command: ["cat", "x"], database: database, secrets: secrets, chunkSizes: [1, 2, 4], zstdLevel: 3)),
        .restore(RestoreJob(database: database, secrets: secrets, chunkSequence: String(repeating: "ab", count: 32))),
    ]

    @Test(arguments: everyKind) func everyJobKindRoundTripsWithItsFields(_ job: AgentJob) throws {
        #expect(try roundTrip(job) == job)
        // One JSON object: `type` names the kind, the payload's fields stand beside it.
        let json = try JSONSerialization.jsonObject(with: JSONEncoder().encode(job)) as? [String: Any]
        #expect(json?["type"] as? String == job.kind.rawValue)
    }

    @Test func everyKindIsCoveredOnce() {
        #expect(Self.everyKind.map(\.kind) == AgentJob.Kind.allCases)
    }

    @Test func theWireNamesAreTheDocumentedOnes() throws {
        let lock =
            try JSONSerialization.jsonObject(with: JSONEncoder().encode(AgentJob.lock(LockJob(root: "/r", layers: ["l"], owner: nil, exclusive: false))))
            as? [String: Any]
        #expect(lock?["names"] as? [String] == ["l"])
        #expect(lock?["root"] as? String == "/r")
        // A put that does not replace says nothing about it.
        let put = try JSONSerialization.jsonObject(with: JSONEncoder().encode(AgentJob.put(PutJob(root: "/r")))) as? [String: Any]
        #expect(put?.keys.sorted() == ["root", "type"])
    }

    @Test func aKindWithoutAFieldItNeedsIsRefused() throws {
        for line in [
            #"{"type":"put"}"#, #"{"type":"get","root":"/r"}"#, #"{"type":"delete","names":["a"]}"#,
            #"{"type":"restore","secrets":{}}"#, #"{"type":"chunk"}"#, #"{"type":"lock"}"#,
        ] {
            #expect(throws: DecodingError.self, "\(line)") { try JSONDecoder().decode(AgentJob.self, from: Data(line.utf8)) }
        }
        // Optional fields may be absent: a shared lock of the repository only.
        let lock = #"{"type":"lock","root":"/r"}"#
        #expect(try JSONDecoder().decode(AgentJob.self, from: Data(lock.utf8)) == .lock(LockJob(root: "/r", layers: [], owner: nil, exclusive: false)))
    }

    @Test func secretsAreBase64UnderTheirNamesAndTheKeysMustBe32Bytes() throws {
        let s = JobSecrets(
            dataKey: Data(repeating: 0xAB, count: 32), idKey: Data(repeating: 0xCD, count: 32), chunkerSeed: Data([1]),
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
        #expect((try? JSONDecoder().decode(AgentJob.self, from: Data(extra.utf8)))?.kind == .check)
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
