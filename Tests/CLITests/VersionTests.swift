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
