import Foundation

/// Runs blocking C calls (libpq, libmariadb, hiredis) on a thread of their own.
///
/// Swift's cooperative pool has as many threads as cores (two here); one probe stuck in a
/// connect to a frozen server would stall every task in the process. Each call gets a
/// fresh thread instead: probes are few (one per node) and short, so a pool would buy little.
enum Blocking {
    static func run<T: Sendable>(_ name: String, _ body: @escaping @Sendable () -> T) async -> T {
        await withCheckedContinuation { (cont: CheckedContinuation<T, Never>) in
            let thread = Thread { cont.resume(returning: body()) }
            thread.name = name
            thread.stackSize = 1 << 20
            thread.start()
        }
    }
}

/// A point in time after which an operation gives up (monotonic clock). Public because the
/// coordinator's SSH transport times its waits the same way.
public struct Deadline: Sendable {
    public let at: Double

    public init(seconds: Double) { at = Deadline.now() + seconds }

    public static func now() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }

    public var remainingMilliseconds: Int32 { Int32(max(0, min(Double(Int32.max), (at - Deadline.now()) * 1000))) }
    public var expired: Bool { Deadline.now() >= at }
}

extension String {
    /// A C library's multi-line message on one line.
    func oneLine() -> String {
        split(whereSeparator: \.isNewline).map { $0.trimmingWhitespace() }.filter { !$0.isEmpty }.joined(separator: " ")
    }
}
