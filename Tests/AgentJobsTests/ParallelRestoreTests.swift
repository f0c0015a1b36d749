// The parallel PostgreSQL sink without a server: every session is a shell that keeps what it
// reads in a file of its own, so the test sees exactly what each psql would have read. What
// must hold: each table whole in one loading session, after the setup that puts it where
// the script stood; the ordered parts in order, in sessions that end before the tables
// start and start after every table is in; a session's failure stops the restore with its
// own words.
import AgentProtocol
@preconcurrency import Crypto
import Engines
import Foundation
import Repository
import TestSupport
import Testing

@testable import AgentJobs

@Suite struct ParallelRestoreTests {
    /// A pg_dumpall-shaped script: roles, one database with `tables` tables of `rows` rows
    /// each (a row's text says its table and number), a sequence value and an index after.
    func script(tables: Int, rows: Int) -> [UInt8] {
        var s = "SET client_encoding = 'UTF8';\nDROP ROLE IF EXISTS postgres;\nCREATE ROLE postgres;\nCREATE ROLE app;\n"
        s += "\\connect shop\n\\restrict k1\nSET statement_timeout = 0;\nSELECT pg_catalog.set_config('search_path', '', false);\n"
        for t in 0..<tables { s += "CREATE TABLE public.t\(t) (id int, v text);\n\n" }
        for t in 0..<tables {
            s += "--\n-- Data for Name: t\(t); Type: TABLE DATA\n--\n\nCOPY public.t\(t) (id, v) FROM stdin;\n"
            for r in 0..<rows { s += "\(r)\ttable \(t) row \(r) \(String(repeating: "x", count: r % 50))\n" }
            s += "\\.\n\n\n"
        }
        s += "SELECT pg_catalog.setval('public.s', 42, true);\nCREATE INDEX i0 ON public.t0 (id);\n\\unrestrict k1\n"
        return Array(s.utf8)
    }

    /// Applies `text` through the sink in pieces of `piece` bytes; what each session read,
    /// in the order the sessions started.
    func apply(_ text: [UInt8], sessions: Int, piece: Int = 100_000, tool: [String]? = nil, spoolBudget: Int64? = nil) throws -> [String] {
        try useBuiltAgentAsLauncher()
        let dir = try PrivateDir()
        let out = "\(dir.path)/sessions"
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: false)
        // Each session's file is named by the time it started, so the order is known.
        let command = tool ?? ["sh", "-c", "f=\"$1/$(date +%s%N)-$$\"; cat > \"$f\"", "sh", out]
        let sink = ParallelToolSink(command, dir: dir, filter: PostgresRestoreFilter(keepRoles: ["postgres"]), sessions: sessions, spoolBudget: spoolBudget)
        var i = 0
        do {
            while i < text.count {
                let end = min(text.count, i + piece)
                try text[i..<end].withUnsafeBytes { try sink.write($0) }
                i = end
            }
            _ = try sink.finish()
        } catch {
            sink.cancel()
            throw error
        }
        return try FileManager.default.contentsOfDirectory(atPath: out).sorted().map {
            try String(contentsOfFile: "\(out)/\($0)", encoding: .utf8)
        }
    }

    @Test(arguments: [2, 3])
    func eachTableLoadsWholeInOneSessionBetweenTheOrderedParts(sessions: Int) throws {
        let text = script(tables: 5, rows: 20_000)
        let read = try apply(text, sessions: sessions, piece: 65_536)
        let setup = "\\connect shop\n\\restrict k1\nSET statement_timeout = 0;\nSELECT pg_catalog.set_config('search_path', '', false);\n"
        // First the ordered part before the tables (without the role the filter keeps), last
        // the one after them, started from the setup.
        let first = try #require(read.first)
        #expect(first.hasPrefix("SET client_encoding = 'UTF8';\nCREATE ROLE app;\n\\connect shop\n"))
        #expect(first.hasSuffix("CREATE TABLE public.t4 (id int, v text);\n\n--\n-- Data for Name: t0; Type: TABLE DATA\n--\n\n"))
        let last = try #require(read.last)
        #expect(last == setup + "SELECT pg_catalog.setval('public.s', 42, true);\nCREATE INDEX i0 ON public.t0 (id);\n\\unrestrict k1\n")
        // Between them the loading sessions, at most `sessions`, each from the setup, each
        // table whole and once.
        let loading = read.dropFirst().dropLast()
        #expect(!loading.isEmpty && loading.count <= sessions)
        var seen: [Int] = []
        for l in loading {
            #expect(l.hasPrefix(setup))
            for block in l.dropFirst(setup.count).split(separator: "\\.\n", omittingEmptySubsequences: true) {
                let lines = block.split(separator: "\n")
                let t = try #require(Int(lines[0].dropFirst("COPY public.t".count).prefix(while: \.isNumber)))
                #expect(lines[0] == "COPY public.t\(t) (id, v) FROM stdin;")
                #expect(lines.count == 20_001)
                #expect(lines.dropFirst().enumerated().allSatisfy { $0.element.hasPrefix("\($0.offset)\ttable \(t) row \($0.offset) ") })
                seen.append(t)
            }
        }
        #expect(seen.sorted() == [0, 1, 2, 3, 4])
    }

    /// A spool budget far below a table (a nearly full disk): the stream waits for the
    /// sessions instead of spooling more, and every table still arrives whole.
    @Test func aSpoolBudgetSmallerThanATableOnlySlowsTheRestore() throws {
        let read = try apply(script(tables: 4, rows: 30_000), sessions: 2, piece: 65_536, spoolBudget: 64 << 10)
        let loaded = read.dropFirst().dropLast().joined()
        for t in 0..<4 {
            let header = "COPY public.t\(t) (id, v) FROM stdin;\n"
            let block = try #require(loaded.range(of: header))
            let rows = loaded[block.upperBound...].split(separator: "\\.\n", maxSplits: 1)[0]
            #expect(rows.split(separator: "\n").count == 30_000)
        }
    }

    @Test func aLoadingSessionsFailureStopsTheRestoreWithItsWords() throws {
        // The loading sessions read the setup and fail; the ordered ones succeed.
        let tool = [
            "sh", "-c",
            "read -r first; if [ \"$first\" = '\\connect shop' ]; then echo 'ERROR:  invalid input syntax for type integer' >&2; exit 3; fi; cat >/dev/null",
        ]
        #expect {
            _ = try apply(script(tables: 3, rows: 50_000), sessions: 2, tool: tool)
        } throws: { error in
            guard let f = error as? JobFailure else { return false }
            return f.message.hasPrefix("sh ended with exit 3: ERROR:  invalid input syntax for type integer")
        }
    }

    @Test func anOrderedSessionsFailureStopsBeforeAnyTable() throws {
        let tool = [
            "sh", "-c",
            "f=$1; read -r first; if [ \"$first\" != '\\connect shop' ]; then cat >/dev/null; echo 'ERROR:  role \"app\" already exists' >&2; exit 3; fi; touch \"$f\"",
            "sh", "/nonexistent/never",
        ]
        #expect {
            _ = try apply(script(tables: 2, rows: 10), sessions: 2, tool: tool)
        } throws: { error in
            (error as? JobFailure)?.message.contains("role \"app\" already exists") == true
        }
    }

    @Test func aScriptWithoutTablesIsOneOrderedSession() throws {
        let text = Array("CREATE ROLE app;\n\\connect shop\nCREATE TABLE public.t (id int);\n".utf8)
        #expect(try apply(text, sessions: 3, piece: 7) == [String(decoding: text, as: UTF8.self)])
    }
}
