// Command-line mistakes get the documented error format (docs/exit-codes.md): one
// `stowage: error:` line saying what is wrong with the value given, one `hint:` line, exit
// 64, and no usage block. Parsing fails before any inventory is read, so no lab is needed.
import Foundation
import TestSupport
import Testing

@Suite struct CLIUsage {
    struct Case: Sendable, CustomStringConvertible {
        var args: [String]
        var says: String
        var description: String { args.joined(separator: " ") }
    }

    static let cases: [Case] = [
        Case(args: ["backup", "shop/sqldb", "--frobnicate"], says: "Unknown option '--frobnicate'"),
        Case(args: ["backup", "shop/sqldb", "--keep", "-1"], says: "--keep -1: keep at least 1 backup"),
        Case(args: ["backup", "shop/sqldb", "--keep", "abc"], says: "'abc' is invalid for '--keep <keep>': not a whole number"),
        Case(args: ["backup", "shop/sqldb", "--keep", "0"], says: "--keep 0: keep at least 1 backup"),
        Case(args: ["backup", "shop/sqldb", "--zstd-level", "40"], says: "--zstd-level 40: expected 1 to 19"),
        Case(args: ["backup", "shop/sqldb", "--from", "secondary"], says: "--from 'secondary': expected primary or replica"),
        Case(args: ["restore", "shop/sqldb"], says: "--backup"),
        Case(args: ["restore", "shop/sqldb", "--backup", "latest", "--jobs", "0"], says: "--jobs 0: expected 1 to 64"),
        Case(args: ["storage", "verify", "lab-storage", "--read-data-subset", "150%"], says: "'150%' is not a percentage from 0% to 100%"),
        Case(args: ["addon", "install", "shop/sqldb", "--keep", "-3"], says: "--keep -3: keep at least 1 backup"),
        Case(args: ["frobnicate"], says: "frobnicate"),
    ]

    @Test(arguments: cases) func usageErrorIsOneLineAndAHint(_ c: Case) throws {
        let r = try runCommand(Repo.stowage, c.args)
        #expect(r.status == 64, "\(c): \(r.stderr)")
        let lines = r.stderr.split(separator: "\n", omittingEmptySubsequences: false).dropLast().map(String.init)
        #expect(lines.count == 2, "\(c): \(r.stderr)")
        #expect(lines.first?.hasPrefix("stowage: error: ") == true, "\(c): \(r.stderr)")
        #expect(lines.first?.contains(c.says) == true, "\(c): \(r.stderr)")
        #expect(lines.last?.hasPrefix("hint: stowage ") == true, "\(c): \(r.stderr)")
        #expect(!r.stderr.contains("USAGE"), "\(c): \(r.stderr)")
        #expect(r.stdout.isEmpty)
    }

    @Test func theHintNamesTheSubcommandsHelp() throws {
        let r = try runCommand(Repo.stowage, ["storage", "verify", "lab-storage", "--read-data-subset", "150%"])
        #expect(r.stderr.contains("hint: stowage storage verify --help lists the arguments and options"), "\(r.stderr)")
    }

    @Test func helpAndVersionStillPrint() throws {
        let help = try runCommand(Repo.stowage, ["backup", "--help"])
        #expect(help.status == 0)
        #expect(help.stdout.contains("--keep"))
        let version = try runCommand(Repo.stowage, ["--version"])
        #expect(version.status == 0)
        #expect(!version.stdout.isEmpty)
    }
}
