// `STOWAGE_TRACE=1`: a timing line on stderr for each step of a run (agent jobs, their
// connection, the key derivation, the topology check), so an operator can see where the
// time of a slow backup goes. It names steps and nodes only, never data or secrets.
import Foundation

package enum Trace {
    package static let enabled: Bool = {
        let v = ProcessInfo.processInfo.environment["STOWAGE_TRACE"] ?? ""
        return !v.isEmpty && v != "0"
    }()

    private static let origin = Deadline.now()
    private static let lock = NSLock()

    /// Seconds since the first use in this process.
    static var now: Double { Deadline.now() - origin }

    /// Writes "trace +SECONDS MESSAGE" on stderr (one write, so lines from threads do not mix).
    package static func log(_ message: @autoclosure () -> String) {
        guard enabled else { return }
        let line = String(format: "trace +%.3f ", now) + message() + "\n"
        lock.withLock { FileHandle.standardError.write(Data(line.utf8)) }
    }

    /// Times `body` and logs "what: N ms".
    package static func span<T, E: Error>(_ what: @autoclosure () -> String, _ body: () async throws(E) -> T) async throws(E) -> T {
        guard enabled else { return try await body() }
        let start = Deadline.now()
        defer { log("\(what()): \(Int((Deadline.now() - start) * 1000)) ms") }
        return try await body()
    }
}
