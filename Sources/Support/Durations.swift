// Durations as operators write them in the inventory, the policies and on the command line.

package enum Durations {
    private static let units: [(String, Double)] = [("ms", 0.001), ("s", 1), ("m", 60), ("h", 3600), ("d", 86400)]

    /// "500ms", "90s", "15m", "26h", "2d", compounds such as "1h30m", or a bare number of
    /// seconds; nil for anything else (negative, empty, an unknown unit).
    package static func parse(_ text: String) -> Double? {
        let s = text.trimmingWhitespace()
        if let v = Double(s) { return v >= 0 ? v : nil }
        var total = 0.0
        var rest = Substring(s)
        guard !rest.isEmpty else { return nil }
        while !rest.isEmpty {
            let digits = rest.prefix { $0.isNumber || $0 == "." }
            guard !digits.isEmpty, let v = Double(digits) else { return nil }
            rest = rest.dropFirst(digits.count)
            // "ms" before "m".
            guard let (unit, factor) = units.sorted(by: { $0.0.count > $1.0.count }).first(where: { rest.hasPrefix($0.0) }) else { return nil }
            rest = rest.dropFirst(unit.count)
            total += v * factor
        }
        return total
    }

    /// The shortest exact spelling parse reads back: "2d", "26h", "1h30m", "45s".
    package static func format(_ seconds: Double) -> String {
        var t = Int(seconds.rounded())
        if t == 0 { return "0s" }
        var out = ""
        for (unit, factor) in [("d", 86400), ("h", 3600), ("m", 60), ("s", 1)] where t >= factor {
            out += "\(t / factor)\(unit)"
            t %= factor
        }
        return out
    }
}
