// The daemon's events: one line each, as text or as JSON that parses line by line, with a
// multi-line value (a failed run's stderr) folded inside its event, and no time stamp of
// their own under systemd's journal.
import Foundation
import Logging
import Support
import Testing

@Suite struct LogFormatTests {
    let stderr = "pg_dumpall: error: connection failed\nFATAL:  password authentication failed for user \"webadmin\""

    @Test func textIsOneLinePerEventWithItsMetadata() {
        let line = StowageLogHandler.line(
            level: .error, message: "shop/sqldb: run 7 failed in 1.2 s",
            metadata: ["layer": "shop/sqldb", "run": "7", "stderr": .string(stderr)],
            time: Date(timeIntervalSince1970: 1_764_000_000), format: .text)
        #expect(!line.contains("\n"))
        #expect(line.hasPrefix("2025-11-24T16:00:00Z error shop/sqldb: run 7 failed in 1.2 s "))
        #expect(line.contains(" layer=shop/sqldb "))
        #expect(line.contains(#"stderr="pg_dumpall: error: connection failed\nFATAL:  password authentication failed for user \"webadmin\"""#), "\(line)")
    }

    @Test func jsonParsesLineByLineAndKeepsTheValuesWhole() throws {
        let line = StowageLogHandler.line(
            level: .warning, message: "a\nb", metadata: ["layer": "shop/cache", "stderr": .string(stderr)],
            time: Date(timeIntervalSince1970: 0), format: .json)
        #expect(!line.contains("\n"))
        let doc = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
        #expect(doc["level"] as? String == "warning")
        #expect(doc["message"] as? String == "a\nb")
        #expect(doc["stderr"] as? String == stderr)
        #expect(doc["layer"] as? String == "shop/cache")
        #expect(doc["time"] as? String == "1970-01-01T00:00:00Z")
    }

    @Test func underTheJournalLinesCarryNoTimeOfTheirOwn() {
        let lines = LockedLines()
        var handler = StowageLogHandler.standard(label: "t", level: .info, format: .text, environment: ["JOURNAL_STREAM": "8:12345"])
        #expect(StowageLogHandler.line(level: .info, message: "m", metadata: [:], time: nil, format: .text) == "info m")
        handler = StowageLogHandler(label: "t", level: .info, format: .json, timestamps: false, write: { lines.append($0) })
        let logger = Logger(label: "t") { _ in handler }
        logger.info("started", metadata: ["event": "scheduler-started"])
        logger.debug("not written at level info")
        #expect(lines.all.count == 1)
        #expect(lines.all.first.map { !$0.contains("\"time\"") && $0.contains("\"event\":\"scheduler-started\"") } == true, "\(lines.all)")
    }
}

final class LockedLines: @unchecked Sendable {
    private let lock = NSLock()
    private var lines: [String] = []
    func append(_ l: String) { lock.lock(); lines.append(l); lock.unlock() }
    var all: [String] { lock.lock(); defer { lock.unlock() }; return lines }
}
