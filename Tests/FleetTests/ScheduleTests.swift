// Next-run computation against a table of cases: every cron feature, the add-on's
// pre-defined schedules, month ends, leap days, and daylight-saving changes in
// Europe/Berlin and America/New_York for custom schedules; bad input rejected with reasons.
import Foundation
import Support
import Testing

@testable import Fleet

private func utc(_ s: String) -> Date {
    let f = ISO8601DateFormatter()
    f.formatOptions = [.withInternetDateTime]
    return f.date(from: s)!
}

private func iso(_ d: Date) -> String {
    let f = ISO8601DateFormatter()
    f.formatOptions = [.withInternetDateTime]
    return f.string(from: d)
}

private func runs(_ s: Schedule, after: String, _ n: Int) -> [String] { s.nextRuns(after: utc(after), count: n).map(iso) }

private func message(_ body: () throws(StowageError) -> Schedule) -> String? {
    do { _ = try body(); return nil } catch { return error.message }
}

@Suite struct CronSchedules {
    struct Case: Sendable, CustomTestStringConvertible {
        var expr: String
        var after: String
        var expect: [String]
        var testDescription: String { expr }
    }

    static let cases: [Case] = [
        // The add-on's pre-defined schedules.
        Case(expr: "hourly", after: "2026-11-21T10:00:00Z", expect: ["2026-11-21T11:00:00Z", "2026-11-21T12:00:00Z"]),
        Case(expr: "daily", after: "2026-11-21T10:00:00Z", expect: ["2026-11-22T00:00:00Z", "2026-11-23T00:00:00Z"]),
        Case(expr: "weekly", after: "2026-11-21T10:00:00Z", expect: ["2026-11-22T00:00:00Z", "2026-11-29T00:00:00Z"]),  // Sundays
        Case(expr: "monthly", after: "2026-11-21T10:00:00Z", expect: ["2026-12-01T00:00:00Z", "2027-01-01T00:00:00Z"]),
        // Lists, ranges, steps, names.
        Case(
            expr: "0,30 9-10 * * *", after: "2026-11-21T09:15:00Z",
            expect: ["2026-11-21T09:30:00Z", "2026-11-21T10:00:00Z", "2026-11-21T10:30:00Z", "2026-11-22T09:00:00Z"]),
        Case(expr: "*/20 * * * *", after: "2026-11-21T10:41:00Z", expect: ["2026-11-21T11:00:00Z", "2026-11-21T11:20:00Z"]),
        Case(expr: "5/20 8 * * *", after: "2026-11-21T08:06:00Z", expect: ["2026-11-21T08:25:00Z", "2026-11-21T08:45:00Z", "2026-11-22T08:05:00Z"]),
        Case(expr: "0 0-12/6 * * *", after: "2026-11-21T00:00:00Z", expect: ["2026-11-21T06:00:00Z", "2026-11-21T12:00:00Z", "2026-11-22T00:00:00Z"]),
        Case(expr: "30 2 * * mon-fri", after: "2026-11-20T03:00:00Z", expect: ["2026-11-23T02:30:00Z", "2026-11-24T02:30:00Z"]),  // Fri → Mon
        Case(expr: "0 12 * jan,jul sun", after: "2026-11-21T00:00:00Z", expect: ["2027-01-03T12:00:00Z", "2027-01-10T12:00:00Z"]),
        Case(expr: "0 0 * * 7", after: "2026-11-21T00:00:00Z", expect: ["2026-11-22T00:00:00Z"]),  // 7 is Sunday too
        // 7 is Sunday only where it is written: steps and '*' stop at 6 (croniter agrees).
        Case(expr: "0 0 * * 2/5", after: "2026-11-21T00:00:00Z", expect: ["2026-11-24T00:00:00Z", "2026-12-01T00:00:00Z"]),
        Case(expr: "0 0 * * 6/1", after: "2026-11-21T00:00:00Z", expect: ["2026-11-28T00:00:00Z", "2026-12-05T00:00:00Z"]),
        Case(expr: "0 0 * * */3", after: "2026-11-21T00:00:00Z", expect: ["2026-11-22T00:00:00Z", "2026-11-25T00:00:00Z", "2026-11-28T00:00:00Z"]),
        Case(expr: "0 0 * * 5-7", after: "2026-11-21T00:00:00Z", expect: ["2026-11-22T00:00:00Z", "2026-11-27T00:00:00Z", "2026-11-28T00:00:00Z"]),
        // Day of month OR day of week when both are restricted.
        Case(
            expr: "0 0 13 * fri", after: "2026-11-10T00:00:00Z",
            expect: ["2026-11-13T00:00:00Z", "2026-11-20T00:00:00Z", "2026-11-27T00:00:00Z", "2026-12-04T00:00:00Z"]),
        // Month ends and leap days.
        Case(expr: "0 0 31 * *", after: "2026-11-21T00:00:00Z", expect: ["2026-12-31T00:00:00Z", "2027-01-31T00:00:00Z", "2027-03-31T00:00:00Z"]),
        Case(expr: "0 0 29 2 *", after: "2026-11-21T00:00:00Z", expect: ["2028-02-29T00:00:00Z", "2032-02-29T00:00:00Z"]),
        Case(expr: "0 0 28-31 2 *", after: "2027-02-27T00:00:00Z", expect: ["2027-02-28T00:00:00Z", "2028-02-28T00:00:00Z", "2028-02-29T00:00:00Z"]),
        // Macros.
        Case(expr: "@yearly", after: "2026-11-21T00:00:00Z", expect: ["2027-01-01T00:00:00Z"]),
        Case(expr: "@daily", after: "2026-11-21T23:59:59Z", expect: ["2026-11-22T00:00:00Z"]),
        Case(expr: "@hourly", after: "2026-12-31T23:00:00Z", expect: ["2027-01-01T00:00:00Z"]),
    ]

    @Test(arguments: cases)
    func nextRuns(_ c: Case) throws {
        #expect(runs(try Schedule.parse(c.expr), after: c.after, c.expect.count) == c.expect)
    }

    @Test func rejectedWithTheReason() {
        #expect(message { () throws(StowageError) in try Schedule.parse("0 0 31 2 *") }?.contains("never runs: day 31 does not exist in Feb") == true)
        #expect(message { () throws(StowageError) in try Schedule.parse("0 0 30,31 2 *") }?.contains("never runs") == true)
        #expect(message { () throws(StowageError) in try Schedule.parse("0 0 31 2 mon") } == nil)  // the OR rule: Mondays in February
        #expect(message { () throws(StowageError) in try Schedule.parse("61 * * * *") }?.contains("minute '61': 61 is out of range") == true)
        #expect(message { () throws(StowageError) in try Schedule.parse("* * * *") }?.contains("expected 5 fields") == true)
        #expect(message { () throws(StowageError) in try Schedule.parse("0 0 * foo *") }?.contains("'foo' is not a number or a name") == true)
        #expect(message { () throws(StowageError) in try Schedule.parse("0 5-2 * * *") }?.contains("runs backwards") == true)
        #expect(message { () throws(StowageError) in try Schedule.parse("*/0 * * * *") }?.contains("not a positive number") == true)
        #expect(message { () throws(StowageError) in try Schedule.parse("@fortnightly") }?.contains("unknown macro") == true)
        #expect(message { () throws(StowageError) in try Schedule.custom(time: "25:00", days: "*", timeZone: "UTC") }?.contains("HH:MM") == true)
        #expect(
            message { () throws(StowageError) in try Schedule.custom(time: "09:00", days: "*", timeZone: "Mars/Olympus") }?.contains(
                "unknown time zone 'Mars/Olympus'") == true)
        #expect(message { () throws(StowageError) in try Schedule.custom(time: "09:00", days: "mon,xyz", timeZone: "UTC") } != nil)
    }
}

@Suite struct CustomSchedules {
    @Test func berlinWeekdaysAcrossTheYear() throws {
        let s = try Schedule.custom(time: "09:00", days: "mon,wed,fri", timeZone: "Europe/Berlin")
        // Winter: UTC+1.
        #expect(runs(s, after: "2026-11-21T00:00:00Z", 3) == ["2026-11-23T08:00:00Z", "2026-11-25T08:00:00Z", "2026-11-27T08:00:00Z"])
        // Summer: UTC+2.
        #expect(runs(s, after: "2026-07-01T00:00:00Z", 1) == ["2026-07-01T07:00:00Z"])
    }

    @Test func berlinSpringForwardSkipsTheHourOnce() throws {
        // 2026-03-29: 02:00 CET → 03:00 CEST. 02:30 does not exist: it runs at 03:30 CEST.
        let s = try Schedule.custom(time: "02:30", days: "*", timeZone: "Europe/Berlin")
        #expect(runs(s, after: "2026-03-27T12:00:00Z", 4) == ["2026-03-28T01:30:00Z", "2026-03-29T01:30:00Z", "2026-03-30T00:30:00Z", "2026-03-31T00:30:00Z"])
    }

    @Test func berlinFallBackRunsOnceAtTheFirstOccurrence() throws {
        // 2026-10-25: 03:00 CEST → 02:00 CET: 02:30 happens twice; it runs at the first.
        let s = try Schedule.custom(time: "02:30", days: "*", timeZone: "Europe/Berlin")
        #expect(runs(s, after: "2026-10-24T12:00:00Z", 3) == ["2026-10-25T00:30:00Z", "2026-10-26T01:30:00Z", "2026-10-27T01:30:00Z"])
        // Asked between the two occurrences, it does not run again that day.
        #expect(runs(s, after: "2026-10-25T00:45:00Z", 1) == ["2026-10-26T01:30:00Z"])
    }

    @Test func newYorkTransitions() throws {
        let s = try Schedule.custom(time: "02:15", days: "sun", timeZone: "America/New_York")
        // 2026-03-08: 02:00 EST → 03:00 EDT; 02:15 runs at 03:15 EDT (07:15Z).
        #expect(runs(s, after: "2026-03-01T12:00:00Z", 2) == ["2026-03-08T07:15:00Z", "2026-03-15T06:15:00Z"])
        // 2026-11-01: 02:00 EDT → 01:00 EST: 01:30 twice, runs once (EDT, 05:30Z).
        let t = try Schedule.custom(time: "01:30", days: "*", timeZone: "America/New_York")
        #expect(runs(t, after: "2026-10-31T12:00:00Z", 3) == ["2026-11-01T05:30:00Z", "2026-11-02T06:30:00Z", "2026-11-03T06:30:00Z"])
    }

    @Test func leapDayAndMonthEndInATimeZone() throws {
        let s = try Schedule.custom(time: "23:30", days: "*", timeZone: "Asia/Tokyo")
        #expect(runs(s, after: "2028-02-28T14:00:00Z", 2) == ["2028-02-28T14:30:00Z", "2028-02-29T14:30:00Z"])
    }
}
