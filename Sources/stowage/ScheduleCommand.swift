import ArgumentParser
import Fleet
import Foundation
import Operations
import Remote
import Repository
import Scheduling
import Storage
import Support

struct ScheduleCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "schedule",
        abstract: "Check schedules.",
        subcommands: [Explain.self, Bench.self])

    /// bench/schedule.sh: the next run of N policies of mixed kinds, timed.
    struct Bench: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Time the next-run computation of N policies.", shouldDisplay: false)

        @Option var policies: Int = 10_000

        func run() async throws {
            let zones = ["Europe/Berlin", "America/New_York", "Asia/Tokyo", "UTC", "Australia/Sydney"]
            let crons = ["hourly", "daily", "weekly", "monthly", "*/15 * * * *", "30 2 * * mon-fri", "0 0 13 * fri", "0 0 29 2 *", "5/20 8-18 * * *"]
            var schedules: [Schedule] = []
            let parseStart = Date()
            for i in 0..<policies {
                if i % 2 == 0 {
                    schedules.append(try Schedule.parse(crons[i % crons.count]))
                } else {
                    schedules.append(
                        try Schedule.custom(
                            time: String(format: "%02d:%02d", i % 24, i % 60), days: i % 3 == 0 ? "mon,wed,fri" : "*",
                            timeZone: zones[i % zones.count]))
                }
            }
            let parsed = Date().timeIntervalSince(parseStart)
            let now = Date()
            let start = Date()
            var latest = now
            for s in schedules { if let n = s.next(after: now), n > latest { latest = n } }
            let secs = Date().timeIntervalSince(start)
            print(
                "policies \(policies): parsed in \(String(format: "%.3f", parsed)) s, next runs in \(String(format: "%.3f", secs)) s (latest \(ISO8601DateFormatter().string(from: latest)))"
            )
        }
    }

    struct Explain: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print the next runs of a schedule: hourly|daily|weekly|monthly, a cron expression (UTC), or --time/--days/--tz.",
            discussion: "Rules for daylight-saving changes: \(Docs.path("schedules.md")).")

        @Argument(help: ArgumentHelp("hourly, daily, weekly, monthly, or five-field cron in UTC (quote it); omit with --time.", valueName: "expr"))
        var expression: String?

        @Option(help: ArgumentHelp("Custom schedule: local time of day.", valueName: "HH:MM"))
        var time: String?

        @Option(help: ArgumentHelp("Custom schedule: days of the week (mon,wed,fri, mon-fri, *).", valueName: "days"))
        var days: String = "*"

        @Option(help: ArgumentHelp("Custom schedule: IANA time zone.", valueName: "zone"))
        var tz: String = "UTC"

        @Option(parsing: .unconditional, help: "How many runs to print.", transform: { try wholeNumber($0) })
        var count: Int = 5

        @Flag(help: Docs.jsonHelp("schedule-explain", "Print the schedule and its next runs (UTC) as JSON"))
        var json = false

        struct Explained: Encodable {
            var schedule: String
            var timeZone: String
            var nextRuns: [String]
        }

        func run() async throws {
            try await reportingErrors {
                let schedule: Schedule
                switch (expression, time) {
                case (let e?, nil): schedule = try Schedule.parse(e)
                case (nil, let t?): schedule = try Schedule.custom(time: t, days: days, timeZone: tz)
                default:
                    throw StowageError(
                        .usage, "give either a schedule expression or --time (with --days and --tz)",
                        hint: "e.g. stowage schedule explain '30 2 * * mon-fri', or --time 03:30 --days mon-fri --tz Europe/Berlin")
                }
                let f = ISO8601DateFormatter()
                if json {
                    var zone = "UTC"
                    if case .custom(_, _, _, let z) = schedule { zone = z.identifier }
                    printJSON(
                        Explained(
                            schedule: "\(schedule)", timeZone: zone,
                            nextRuns: schedule.nextRuns(after: Date(), count: max(1, count)).map { f.string(from: $0) }))
                    return .ok
                }
                print("\(schedule):")
                let local = DateFormatter()
                local.dateFormat = "EEE yyyy-MM-dd HH:mm zzz"
                local.locale = Locale(identifier: "en_US_POSIX")
                if case .custom(_, _, _, let zone) = schedule { local.timeZone = zone } else { local.timeZone = TimeZone(identifier: "UTC") }
                for d in schedule.nextRuns(after: Date(), count: max(1, count)) {
                    print("  \(f.string(from: d))  (\(local.string(from: d)))")
                }
                return .ok
            }
        }
    }
}
