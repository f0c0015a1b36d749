// ISO 8601 UTC time stamps ("2026-12-07T05:30:02Z"), as ISO8601DateFormatter writes them by
// default, without one: Foundation on Linux builds an ICU formatter per instance, and a
// formatter per log line or per policy made a third of a 10,000-layer scheduler's CPU
// (bench/results/coordination-*.md). Pure arithmetic on the proleptic Gregorian calendar.
import Foundation

package enum UTCStamp {
    /// `date` to the second (truncated), in UTC.
    package static func format(_ date: Date) -> String {
        let t = Int(floor(date.timeIntervalSince1970))
        let days = t >= 0 ? t / 86400 : (t - 86399) / 86400
        let secs = t - days * 86400
        let (y, m, d) = civil(days)
        func two(_ v: Int) -> String { v < 10 ? "0\(v)" : "\(v)" }
        let year = y >= 0 && y < 10000 ? String(repeating: "0", count: 4 - String(y).count) + String(y) : String(y)
        return "\(year)-\(two(m))-\(two(d))T\(two(secs / 3600)):\(two(secs % 3600 / 60)):\(two(secs % 60))Z"
    }

    /// "YYYY-MM-DDTHH:MM:SSZ"; anything else (offsets, fractions) through ISO8601DateFormatter.
    package static func parse(_ s: String) -> Date? {
        let c = Array(s.utf8)
        if c.count == 20, c[4] == 45, c[7] == 45, c[10] == 84, c[13] == 58, c[16] == 58, c[19] == 90 {
            func n(_ r: Range<Int>) -> Int? {
                var v = 0
                for i in r {
                    guard (48...57).contains(c[i]) else { return nil }
                    v = v * 10 + Int(c[i]) - 48
                }
                return v
            }
            if let y = n(0..<4), let mo = n(5..<7), let d = n(8..<10), let h = n(11..<13), let mi = n(14..<16), let se = n(17..<19),
                (1...12).contains(mo), (1...31).contains(d), h < 24, mi < 60, se < 61
            {
                return Date(timeIntervalSince1970: Double(days(y, mo, d) * 86400 + h * 3600 + mi * 60 + se))
            }
            return nil
        }
        return ISO8601DateFormatter().date(from: s)
    }

    /// Days since 1970-01-01 → (year, month, day) (H. Hinnant's civil_from_days).
    static func civil(_ z0: Int) -> (Int, Int, Int) {
        let z = z0 + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let d = doy - (153 * mp + 2) / 5 + 1
        let m = mp < 10 ? mp + 3 : mp - 9
        return (yoe + era * 400 + (m <= 2 ? 1 : 0), m, d)
    }

    /// (year, month, day) → days since 1970-01-01 (days_from_civil).
    static func days(_ y0: Int, _ m: Int, _ d: Int) -> Int {
        let y = m <= 2 ? y0 - 1 : y0
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return era * 146_097 + doe - 719_468
    }
}
