// The parallel restore's router against a script pg_dumpall wrote (fixtures/postgres/
// record.sh: a database whose name needs quoting, odd table data, and COPY headers inside a
// comment's string and a function's body), and the lexer on its own.
import Engines
import Foundation
import Testing

private let fixture = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent().appendingPathComponent("fixtures/postgres/dumpall.sql")

/// What the router did with a script, as text: the ordered sessions' scripts, each table's
/// block with the setup its session started from.
private struct Routed: Equatable {
    var mains: [String] = []
    var tables: [(setup: String, header: String, rows: String)] = []
    var loadSetups: [String] = []
    var gaveUp = false

    static func == (a: Routed, b: Routed) -> Bool {
        a.mains == b.mains && a.loadSetups == b.loadSetups && a.gaveUp == b.gaveUp
            && a.tables.map { [$0.setup, $0.header, $0.rows] } == b.tables.map { [$0.setup, $0.header, $0.rows] }
    }
}

private func route(_ script: [UInt8], window: Int, maxLine: Int = 8 << 20) -> Routed {
    var r = PostgresScriptRouter(maxLine: maxLine)
    var out = Routed()
    var main: [UInt8]?
    var rows: [UInt8] = []
    var header = ""
    var setupNow = ""
    var mainSetup: [UInt8] = []
    func step(_ s: PostgresScriptRouter.Step) {
        switch s {
        case .main(let b):
            if main == nil { main = mainSetup }
            main! += Array(b)
        case .dataBegins(let setup):
            if let m = main { out.mains.append(String(decoding: m, as: UTF8.self)) }
            main = nil
            setupNow = String(decoding: setup, as: UTF8.self)
            out.loadSetups.append(setupNow)
        case .copyBegins(let h):
            header = String(decoding: h, as: UTF8.self)
            rows = []
        case .rows(let b): rows += Array(b)
        case .copyEnds: out.tables.append((setupNow, header, String(decoding: rows, as: UTF8.self)))
        case .dataEnds(let setup): mainSetup = setup
        }
    }
    var i = 0
    while i < script.count {
        let end = min(script.count, i + window)
        script[i..<end].withUnsafeBytes { b in r.feed(b) { step($0) } }
        i = end
    }
    r.finish { step($0) }
    if let m = main { out.mains.append(String(decoding: m, as: UTF8.self)) }
    out.gaveUp = r.gaveUp
    return out
}

@Suite struct PostgresScriptRouting {
    let script = Array(try! Data(contentsOf: fixture))

    @Test func tablesGoToLoadingSessionsAndTheRestStaysInOrder() throws {
        let r = route(script, window: script.count)
        #expect(!r.gaveUp)
        // The three tables of "route test", each whole, with its own header: the two COPY
        // lines inside the comment's string and the function's body are not tables.
        #expect(
            r.tables.map(\.header) == [
                "COPY public.\"Odd \"\"name\"\"\" (id, v) FROM stdin;\n", "COPY public.empty_one (x) FROM stdin;\n",
                "COPY public.plain (id, ref, note) FROM stdin;\n",
            ])
        #expect(r.tables[0].rows.hasPrefix("1\t\\\\.\n2\ta\\tb\\nc\n3\t\n4\t\\N\n5\tback\\\\slash\n6\tCOPY x FROM stdin;\n"))
        #expect(r.tables[1].rows.isEmpty)
        #expect(r.tables[2].rows.split(separator: "\n").count == 300)
        #expect(r.tables[2].rows.hasSuffix("300\t1\trow 300\n"))
        // One data section, so two ordered scripts: before the tables and after them.
        #expect(r.mains.count == 2)
        #expect(r.mains[0].contains("COPY public.plain (id, ref, note) FROM stdin;\n\\.\nlast line';"))
        #expect(r.mains[0].contains("-- a body that looks like table data\nCOPY public.plain (id, ref, note) FROM stdin;\nEND\n$$;"))
        #expect(r.mains[0].hasPrefix("--\n-- PostgreSQL database cluster dump\n--\n\n\\restrict stowagefixture\n"))
        // The loading sessions and the second ordered one stand where the script stood.
        let setup = r.loadSetups[0]
        #expect(setup.hasPrefix("\\connect -reuse-previous=on \"dbname='route test'\"\n\\restrict stowagefixture\nSET statement_timeout = 0;\n"))
        #expect(setup.contains("SELECT pg_catalog.set_config('search_path', '', false);\n"))
        #expect(setup.hasSuffix("SET default_table_access_method = heap;\n"))
        #expect(r.mains[1].hasPrefix(setup + "SELECT pg_catalog.setval('public.plain_id_seq', 300, true);\n"))
        #expect(r.mains[1].contains("ADD CONSTRAINT plain_ref_fkey FOREIGN KEY"))
        #expect(r.mains[1].hasSuffix("\\unrestrict stowagefixture\n\n--\n-- PostgreSQL database cluster dump complete\n--\n\n"))
    }

    @Test func everyByteGoesSomewhereInOrder() {
        // Joined back (tables in place, blank lines and comments between them left out), the
        // routed script is the script.
        let r = route(script, window: script.count)
        let s = String(decoding: script, as: UTF8.self)
        let dataStart = s.range(of: "COPY public.\"Odd")!.lowerBound
        let dataEnd = s.range(of: "SELECT pg_catalog.setval")!.lowerBound
        let before = String(s[..<dataStart])
        let after = String(s[dataEnd...])
        #expect(r.mains[0] == before)
        #expect(r.mains[1] == r.loadSetups[0] + after)
        var tables = ""
        for t in r.tables { tables += t.header + t.rows + "\\.\n" }
        let data = s[dataStart..<dataEnd].split(separator: "\n", omittingEmptySubsequences: true).filter { !$0.hasPrefix("--") }
        #expect(tables.split(separator: "\n").map(String.init) == data.map(String.init))
    }

    /// The backup's row counter sees the tables the router sees: the COPY lines in the
    /// comment's string and the function's body are not data (they once added 65 rows).
    @Test(arguments: [3, 4096, 1 << 20])
    func theDumpCounterCountsOnlyTableRows(window: Int) {
        var c = PostgresDumpCounter()
        var i = 0
        while i < script.count {
            let end = min(script.count, i + window)
            script[i..<end].withUnsafeBytes { c.feed($0) }
            i = end
        }
        #expect(c.finish() == ["route test": 306, "postgres": 0, "template1": 0])
    }

    @Test(arguments: [1, 2, 3, 5, 64, 4096])
    func theCutsDoNotDependOnTheBuffers(window: Int) {
        #expect(route(script, window: window) == route(script, window: script.count))
    }

    @Test func aLineLongerThanTheLimitSendsTheRestInOrder() {
        // A statement line of 100 bytes with a limit of 64: from there on psql alone.
        let long = "SELECT '" + String(repeating: "x", count: 90) + "';\n"
        let text = "\\connect db\nCOPY public.a (x) FROM stdin;\n1\n\\.\n" + long + "COPY public.b (x) FROM stdin;\n2\n\\.\n"
        let r = route(Array(text.utf8), window: 7, maxLine: 64)
        #expect(r.gaveUp)
        #expect(r.tables.map(\.header) == ["COPY public.a (x) FROM stdin;\n"])
        #expect(r.mains == ["\\connect db\n", "\\connect db\n" + long + "COPY public.b (x) FROM stdin;\n2\n\\.\n"])
    }

    @Test func aScriptEndingInsideATableSendsWhatItHas() {
        let r = route(Array("\\connect db\nCOPY public.a (x) FROM stdin;\n1\n2".utf8), window: 3)
        #expect(r.tables.isEmpty)  // never ended: the loading session gets its rows and no end
        var steps: [String] = []
        var router = PostgresScriptRouter()
        Array("COPY public.a (x) FROM stdin;\n1\n2".utf8).withUnsafeBytes { b in
            router.feed(b) { s in
                if case .rows(let x) = s { steps.append("rows " + String(decoding: x, as: UTF8.self)) }
            }
        }
        router.finish { s in if case .dataEnds = s { steps.append("dataEnds") } }
        #expect(steps == ["rows 1\n2", "dataEnds"])
    }
}

@Suite struct SQLLexing {
    func state(_ lines: [String]) -> SQLLexState {
        var s = SQLLexState()
        for l in lines { Array(l.utf8).withUnsafeBytes { s.feed($0) } }
        return s
    }

    @Test func boundaries() {
        #expect(state([]).atBoundary)
        #expect(state(["SET x = 1;\n"]).atBoundary)
        #expect(!state(["CREATE TABLE t (\n"]).atBoundary)
        #expect(state(["CREATE TABLE t (\n", "  a int\n", ");\n"]).atBoundary)
        #expect(state(["-- a comment; with a quote '\n"]).atBoundary)
        #expect(state(["SELECT 1; -- done '\n"]).atBoundary)
    }

    @Test func quotesAndBodiesSpanLines() {
        #expect(!state(["COMMENT ON TABLE t IS 'first\n"]).atBoundary)
        #expect(!state(["COMMENT ON TABLE t IS 'it''s;\n"]).atBoundary)
        #expect(state(["COMMENT ON TABLE t IS 'it''s\n", "done';\n"]).atBoundary)
        #expect(!state(["SELECT E'a\\';\n"]).atBoundary)  // \' inside E'' does not end it
        #expect(state(["SELECT E'a\\'b';\n"]).atBoundary)
        #expect(state(["SELECT 'a\\';\n"]).atBoundary)  // a standard string: \ is a character
        #expect(!state(["CREATE FUNCTION f() AS $$\n", "BEGIN; END;\n"]).atBoundary)
        #expect(state(["CREATE FUNCTION f() AS $$\n", "BEGIN; END;\n", "$$;\n"]).atBoundary)
        #expect(!state(["AS $body$ $$; $b$\n"]).atBoundary)  // another tag does not close it
        #expect(state(["AS $body$ $$; $body$;\n"]).atBoundary)
        #expect(state(["SELECT $1 + a$b;\n"]).atBoundary)  // a parameter and an identifier, not quotes
        #expect(!state(["CREATE TABLE \"a;\n"]).atBoundary)
        #expect(state(["CREATE TABLE \"a\"\"b\" (x int);\n"]).atBoundary)
        #expect(!state(["/* a /* nested */ comment;\n"]).atBoundary)
        #expect(state(["/* a /* nested */ */ SELECT 1;\n"]).atBoundary)
    }
}
