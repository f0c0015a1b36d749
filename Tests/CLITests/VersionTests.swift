// `stowage --version` says which build this is: the version and the commit it was built
// from, the one scripts/build-info.sh recorded (a real commit of this repository).
import Foundation
import TestSupport
import Testing

@Suite struct Version {
    @Test func versionNamesTheCommitOfTheBuild() throws {
        let r = try runCommand(Repo.stowage, ["--version"])
        #expect(r.status == 0, "\(r.stderr)")
        let line = r.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let recorded = try String(contentsOfFile: Repo.path("Sources/CAgentSys/build_commit.h"), encoding: .utf8)
        let commit = try #require(recorded.split(separator: "\"").dropFirst().first.map(String.init), "build_commit.h: \(recorded)")
        #expect(line == "0.1.0 (commit \(commit))")
        // A commit this repository has.
        let hash = String(commit.prefix { $0 != "-" })
        #expect(hash.count == 12 && hash.allSatisfy(\.isHexDigit), "\(commit)")
        let known = try runCommand("/usr/bin/git", ["-C", Repo.root.path, "cat-file", "-e", "\(hash)^{commit}"])
        #expect(known.status == 0, "\(hash) is not a commit here: \(known.stderr)")
    }
}

@Suite struct ScheduleExplainJSON {
    @Test func theNextRunsAsADocument() throws {
        let r = try runCommand(
            Repo.stowage, ["schedule", "explain", "--time", "03:30", "--days", "mon-fri", "--tz", "Europe/Berlin", "--count", "3", "--json"])
        #expect(r.status == 0, "\(r.stderr)")
        struct Doc: Decodable { var schedule: String; var timeZone: String; var nextRuns: [String] }
        let doc = try JSONDecoder().decode(Doc.self, from: Data(r.stdout.utf8))
        #expect(doc.timeZone == "Europe/Berlin" && doc.nextRuns.count == 3)
        let f = ISO8601DateFormatter()
        let runs = doc.nextRuns.compactMap(f.date(from:))
        #expect(runs.count == 3 && zip(runs, runs.dropFirst()).allSatisfy { $0 < $1 })
        // 03:30 in Berlin is 01:30 or 02:30 UTC, on weekdays only.
        var berlin = Calendar(identifier: .gregorian)
        berlin.timeZone = TimeZone(identifier: "Europe/Berlin")!
        for d in runs {
            let c = berlin.dateComponents([.hour, .minute, .weekday], from: d)
            #expect(c.hour == 3 && c.minute == 30 && (2...6).contains(c.weekday ?? 0), "\(d)")
        }
    }
}
