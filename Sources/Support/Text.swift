// Numbers and tables for people: shared by every report the CLI prints and by messages.
import Foundation

/// A table of columns padded to their widest cell (the last column is not padded).
package func textTable(_ rows: [[String]], indent: String = "") -> String {
    let widths = rows[0].indices.map { c in rows.map { $0[c].count }.max() ?? 0 }
    return rows.map { r in
        indent
            + r.enumerated().map { c, cell in c == r.count - 1 ? cell : cell.padding(toLength: widths[c], withPad: " ", startingAt: 0) }
            .joined(separator: "  ").trimmingTrailingWhitespace()
    }.joined(separator: "\n") + "\n"
}

package func formatBytes(_ b: Int64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"]
    var v = Double(b), i = 0
    while v >= 1024 && i < units.count - 1 { v /= 1024; i += 1 }
    return i == 0 ? "\(b) B" : "\(String(format: "%.1f", v)) \(units[i])"
}

/// A duration for people: "0.4 s", "42 s", "3 min 34 s", "2 h 5 min".
package func formatDuration(_ s: Double) -> String {
    if s < 10 { return "\((s * 10).rounded() / 10) s" }
    let t = Int(s.rounded())
    if t < 120 { return "\(t) s" }
    if t < 7200 { return t % 60 == 0 ? "\(t / 60) min" : "\(t / 60) min \(t % 60) s" }
    return "\(t / 3600) h \(t % 3600 / 60) min"
}

extension String {
    package func trimmingTrailingWhitespace() -> String {
        var s = self[...]
        while let l = s.last, l.isWhitespace { s = s.dropLast() }
        return String(s)
    }
}

extension Substring {
    package func trimmingWhitespace() -> Substring {
        var s = self
        while let f = s.first, f.isWhitespace { s = s.dropFirst() }
        while let l = s.last, l.isWhitespace { s = s.dropLast() }
        return s
    }
}

extension String {
    package func trimmingWhitespace() -> String { String(self[...].trimmingWhitespace()) }
}

/// The running executable's real path (Linux's /proc/self/exe, symlinks resolved), or nil
/// when /proc is not there: where the agent binary, the installed docs and the scheduler's
/// own children are found from.
package func currentExecutablePath() -> String? {
    try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")
}
