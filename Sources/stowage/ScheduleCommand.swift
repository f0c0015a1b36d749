import ArgumentParser
import Coordinator
import Foundation

struct ScheduleCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "schedule",
        abstract: "Check schedules.",
        subcommands: [Explain.self])

    struct Explain: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print the next runs of a schedule: hourly|daily|weekly|monthly, a cron expression (UTC), or --time/--days/--tz.",
            discussion: "Rules for daylight-saving changes: docs/schedules.md.")

        @Argument(help: ArgumentHelp("hourly, daily, weekly, monthly, or five-field cron in UTC (quote it); omit with --time.", valueName: "expr"))
        var expression: String?

        @Option(help: ArgumentHelp("Custom schedule: local time of day.", valueName: "HH:MM"))
        var time: String?

        @Option(help: ArgumentHelp("Custom schedule: days of the week (mon,wed,fri, mon-fri, *).", valueName: "days"))
        var days: String = "*"

        @Option(help: ArgumentHelp("Custom schedule: IANA time zone.", valueName: "zone"))
        var tz: String = "UTC"

        @Option(help: "How many runs to print.")
        var count: Int = 5

        func run() async throws {
            try await reportingErrors {
                let schedule: Schedule
                switch (expression, time) {
                case (let e?, nil): schedule = try Schedule.parse(e)
                case (nil, let t?): schedule = try Schedule.custom(time: t, days: days, timeZone: tz)
                default: throw StowageError(.usage, "give either a schedule expression or --time (with --days and --tz)")
                }
                print("\(schedule):")
                let f = ISO8601DateFormatter()
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
