// Schedules, as the add-on offers them (docs/schedules.md): pre-defined (hourly, daily,
// weekly, monthly, in UTC), custom (a time of day on some days of the week in an IANA time
// zone), or five-field cron in UTC. Pure: parsing and next-run computation, no clock read.
import Foundation
import Repository
import Support
import Topology

package struct CronExpression: Sendable, Equatable, CustomStringConvertible {
    package let minutes: Set<Int>
    package let hours: Set<Int>
    package let daysOfMonth: Set<Int>
    package let months: Set<Int>
    /// 0 = Sunday ... 6 = Saturday (7 is read as 0).
    package let daysOfWeek: Set<Int>
    /// Whether the day fields were `*`: cron's rule is "day of month OR day of week" when
    /// both are restricted, AND otherwise.
    let domStar: Bool
    let dowStar: Bool
    package let description: String

    static let monthNames = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
    static let dayNames = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]
    static let macros = [
        "@hourly": "0 * * * *", "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@weekly": "0 0 * * 0",
        "@monthly": "0 0 1 * *", "@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *",
    ]

    package init(_ text: String) throws(StowageError) {
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        let expr = Self.macros[trimmed.lowercased()] ?? trimmed
        if trimmed.hasPrefix("@") && Self.macros[trimmed.lowercased()] == nil {
            throw StowageError(.usage, "cron '\(text)': unknown macro \(trimmed)", hint: "macros: @hourly @daily @weekly @monthly @yearly")
        }
        let f = expr.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
        guard f.count == 5 else {
            throw StowageError(
                .usage, "cron '\(text)': expected 5 fields (minute hour day-of-month month day-of-week), found \(f.count)",
                hint: "e.g. '30 2 * * 1-5' (02:30 UTC on weekdays)")
        }
        minutes = try Self.field(f[0], "minute", 0...59, names: [], text: text)
        hours = try Self.field(f[1], "hour", 0...23, names: [], text: text)
        daysOfMonth = try Self.field(f[2], "day of month", 1...31, names: [], text: text)
        months = try Self.field(f[3], "month", 1...12, names: Self.monthNames, nameBase: 1, text: text)
        daysOfWeek = Set(try Self.field(f[4], "day of week", 0...7, openEnd: 6, names: Self.dayNames, text: text).map { $0 % 7 })
        domStar = f[2] == "*" || f[2] == "?"
        dowStar = f[4] == "*" || f[4] == "?"
        description = trimmed
        // A day of month that no chosen month has never runs (0 0 31 2 *). With a day of
        // week as well, cron's OR rule still lets it run.
        if dowStar {
            let longest = [31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]
            if !months.contains(where: { m in daysOfMonth.contains { $0 <= longest[m - 1] } }) {
                let names = months.sorted().map { Self.monthNames[$0 - 1].capitalized }.joined(separator: ", ")
                throw StowageError(
                    .usage, "cron '\(text)' never runs: day \(daysOfMonth.sorted().map(String.init).joined(separator: ",")) does not exist in \(names)",
                    hint: "pick a day every chosen month has, or use a day of the week")
            }
        }
    }

    /// `openEnd` is where `*` and `a/n` stop when it is below the range's top: the day of
    /// week accepts 7 for Sunday where it is written, but `*/2` or `2/5` never reach it
    /// (croniter and Vixie cron agree: `2/5` is Tuesday only).
    static func field(
        _ s: String, _ what: String, _ range: ClosedRange<Int>, openEnd: Int? = nil, names: [String], nameBase: Int = 0,
        text: String
    ) throws(StowageError) -> Set<Int> {
        let top = openEnd ?? range.upperBound
        func bad(_ why: String) -> StowageError {
            StowageError(
                .usage, "cron '\(text)': \(what) '\(s)': \(why)",
                hint: "\(what) takes \(range.lowerBound)-\(range.upperBound), lists (a,b), ranges (a-b) and steps (*/n, a-b/n)")
        }
        func value(_ v: Substring) throws(StowageError) -> Int {
            if let n = Int(v) {
                guard range.contains(n) else { throw bad("\(n) is out of range") }
                return n
            }
            if let i = names.firstIndex(of: v.lowercased()) { return i + nameBase }
            throw bad("'\(v)' is not a number\(names.isEmpty ? "" : " or a name")")
        }
        var out = Set<Int>()
        for part in s.split(separator: ",", omittingEmptySubsequences: false) {
            guard !part.isEmpty else { throw bad("empty list item") }
            let pieces = part.split(separator: "/", omittingEmptySubsequences: false)
            guard pieces.count <= 2 else { throw bad("more than one step") }
            var step = 1
            if pieces.count == 2 {
                guard let n = Int(pieces[1]), n >= 1 else { throw bad("step '\(pieces[1])' is not a positive number") }
                step = n
            }
            let base = pieces[0]
            var lo: Int, hi: Int
            if base == "*" || base == "?" {
                lo = range.lowerBound; hi = top
            } else if let dash = base.firstIndex(of: "-") {
                lo = try value(base[..<dash])
                hi = try value(base[base.index(after: dash)...])
                guard lo <= hi else { throw bad("range \(lo)-\(hi) runs backwards") }
            } else {
                lo = try value(base)
                // "a/n" is "a-max/n".
                hi = pieces.count == 2 ? max(lo, top) : lo
            }
            for v in stride(from: lo, through: hi, by: step) { out.insert(v) }
        }
        return out
    }

    /// Whether a UTC civil day matches the day fields.
    func matchesDay(day: Int, month: Int, weekday: Int) -> Bool {
        guard months.contains(month) else { return false }
        let dom = daysOfMonth.contains(day), dow = daysOfWeek.contains(weekday)
        if domStar || dowStar { return dom && dow }
        return dom || dow
    }

    /// The first minute strictly after `after` that matches, in UTC; nil if none in 5 years.
    package func next(after: Date) -> Date? {
        let start = Int((after.timeIntervalSince1970 / 60).rounded(.down)) + 1  // minutes since epoch
        var dayIndex = start / 1440
        var minuteOfDay = start % 1440
        let sortedHours = hours.sorted(), sortedMinutes = minutes.sorted()
        for _ in 0..<(366 * 5 + 2) {
            let (y, m, d) = CivilDate.fromDays(dayIndex)
            _ = y
            let weekday = ((dayIndex % 7) + 11) % 7  // 1970-01-01 was a Thursday (4)
            if matchesDay(day: d, month: m, weekday: weekday) {
                for h in sortedHours where h * 60 + 59 >= minuteOfDay {
                    for mi in sortedMinutes where h * 60 + mi >= minuteOfDay {
                        return Date(timeIntervalSince1970: Double((dayIndex * 1440 + h * 60 + mi) * 60))
                    }
                }
            }
            dayIndex += 1
            minuteOfDay = 0
        }
        return nil
    }
}

package enum Schedule: Sendable, Equatable, CustomStringConvertible {
    /// Pre-defined schedules and crontab: UTC.
    case cron(CronExpression)
    /// A local time of day on some days of the week (0 = Sunday), in a time zone.
    case custom(hour: Int, minute: Int, days: Set<Int>, timeZone: TimeZone)

    /// The add-on's pre-defined schedules, at its exact times (UTC).
    package static let predefined = ["hourly": "0 * * * *", "daily": "0 0 * * *", "weekly": "0 0 * * 0", "monthly": "0 0 1 * *"]

    /// `hourly|daily|weekly|monthly`, or a cron expression (UTC).
    package static func parse(_ s: String) throws(StowageError) -> Schedule {
        .cron(try CronExpression(predefined[s.lowercased()] ?? s))
    }

    /// `--time 09:00 --days mon,wed,fri --tz Europe/Berlin` (days: names, ranges like
    /// mon-fri, or `*` for every day).
    package static func custom(time: String, days: String, timeZone tz: String) throws(StowageError) -> Schedule {
        let p = time.split(separator: ":")
        guard p.count == 2, let h = Int(p[0]), let m = Int(p[1]), (0...23).contains(h), (0...59).contains(m), p[1].count == 2 else {
            throw StowageError(.usage, "time '\(time)': expected HH:MM (00:00 to 23:59)", hint: "e.g. --time 03:30")
        }
        guard let zone = TimeZone(identifier: tz), tz.contains("/") || tz == "UTC" || tz == "GMT" else {
            throw StowageError(.usage, "unknown time zone '\(tz)'", hint: "an IANA name such as Europe/Berlin, America/New_York or UTC")
        }
        let set = try CronExpression.field(days, "days", 0...7, openEnd: 6, names: CronExpression.dayNames, text: days).map { $0 % 7 }
        return .custom(hour: h, minute: m, days: Set(set), timeZone: zone)
    }

    package var description: String {
        switch self {
        case .cron(let c): return "cron '\(c.description)' (UTC)"
        case .custom(let h, let m, let days, let tz):
            let names = days.sorted().map { CronExpression.dayNames[$0] }.joined(separator: ",")
            return String(format: "%02d:%02d", h, m) + " on \(days.count == 7 ? "every day" : names) (\(tz.identifier))"
        }
    }

    /// The first run strictly after `after`.
    ///
    /// Custom schedules across daylight-saving changes: a time that does not exist that day
    /// (the clock jumps over it) runs as much later as the jump (02:30 on a day the clock
    /// goes from 02:00 to 03:00 runs at 03:30); a time that happens twice (the clock goes
    /// back) runs once, at its first occurrence. So a schedule runs exactly once on each
    /// chosen day.
    package func next(after: Date) -> Date? {
        switch self {
        case .cron(let c): return c.next(after: after)
        case .custom(let h, let m, let days, let tz):
            guard !days.isEmpty else { return nil }
            let localNow = Int(after.timeIntervalSince1970) + tz.secondsFromGMT(for: after)
            var day = Int((Double(localNow) / 86400).rounded(.down)) - 1
            for _ in 0..<10 {
                let weekday = ((day % 7) + 11) % 7
                if days.contains(weekday) {
                    let t = Self.instant(localDay: day, hour: h, minute: m, tz: tz)
                    if t > after { return t }
                }
                day += 1
            }
            return nil
        }
    }

    /// The instant a local wall time names, with the rules above for gaps and repeats.
    static func instant(localDay day: Int, hour: Int, minute: Int, tz: TimeZone) -> Date {
        let naive = day * 86400 + hour * 3600 + minute * 60  // the wall time read as UTC
        let before = tz.secondsFromGMT(for: Date(timeIntervalSince1970: Double(naive - 86400)))
        let after = tz.secondsFromGMT(for: Date(timeIntervalSince1970: Double(naive + 86400)))
        let valid = Set([before, after]).map { naive - $0 }.filter {
            tz.secondsFromGMT(for: Date(timeIntervalSince1970: Double($0))) == naive - $0
        }
        // Repeated: the earlier; skipped: read with the offset before the jump.
        return Date(timeIntervalSince1970: Double(valid.min() ?? (naive - before)))
    }

    package func nextRuns(after: Date, count: Int) -> [Date] {
        var out: [Date] = []
        var t = after
        while out.count < count, let n = next(after: t) {
            out.append(n)
            t = n
        }
        return out
    }
}
