// A pg_dumpall script cut into what can run at once. pg_dump writes each database as
// pre-data (schemas, tables), then data (one `COPY ... FROM stdin;` block per table, then
// sequence values), then post-data (constraints, indexes, triggers, foreign keys). A
// parallel restore runs the pre-data in one session, loads the tables in several sessions
// at once (each table whole, in its order, in one session: a restored table reads back in
// the same order as with psql alone), and once every table is loaded runs the rest in one
// session again. The cuts are made only where psql itself would be between statements: a
// COPY header is recognised only at a statement boundary, outside any quote, comment or
// dollar-quoted body, so a function whose body mentions COPY stays whole.

#if canImport(Glibc)
import Glibc
#endif

/// Where psql's lexer would be after some statement text: inside a quote, an identifier, a
/// dollar-quoted body or a block comment, or between them; and whether a statement has
/// begun and not yet ended with `;`. Fed whole lines (the state carries from one to the
/// next).
package struct SQLLexState: Sendable, Equatable {
    enum Mode: Sendable, Equatable {
        case normal
        case quoted(UInt8, escapes: Bool)
        case dollar([UInt8])
        case comment(depth: Int)
    }
    var mode: Mode = .normal
    /// Statement text seen since the last `;` (comments and blanks are not statement text).
    package private(set) var inStatement = false

    package init() {}

    /// Between statements: the next line starts a statement, a meta-command or a comment.
    package var atBoundary: Bool { mode == .normal && !inStatement }

    private static func isIdent(_ c: UInt8) -> Bool {
        (c >= 0x61 && c <= 0x7A) || (c >= 0x41 && c <= 0x5A) || (c >= 0x30 && c <= 0x39) || c == 0x5F || c >= 0x80
    }
    private static func isIdentStart(_ c: UInt8) -> Bool {
        (c >= 0x61 && c <= 0x7A) || (c >= 0x41 && c <= 0x5A) || c == 0x5F || c >= 0x80
    }

    /// Advances over one line (its newline included or not).
    package mutating func feed(_ s: UnsafeRawBufferPointer) {
        let n = s.count
        var i = 0
        while i < n {
            let c = s[i]
            switch mode {
            case .normal:
                if c == 0x2D && i + 1 < n && s[i + 1] == 0x2D { return }  // -- to the end of the line
                if c == 0x2F && i + 1 < n && s[i + 1] == 0x2A {  // /*
                    mode = .comment(depth: 1)
                    i += 2
                    continue
                }
                switch c {
                case 0x3B: inStatement = false  // ;
                case 0x27:  // '  (E'...' takes backslash escapes)
                    let e = i > 0 && (s[i - 1] == 0x45 || s[i - 1] == 0x65) && (i < 2 || !Self.isIdent(s[i - 2]))
                    mode = .quoted(0x27, escapes: e)
                    inStatement = true
                case 0x22: mode = .quoted(0x22, escapes: false); inStatement = true
                case 0x24:  // $tag$ or $$, not inside an identifier ($1 and a$b are not quotes)
                    inStatement = true
                    if i > 0 && Self.isIdent(s[i - 1]) || (i > 0 && s[i - 1] == 0x24) { break }
                    var j = i + 1
                    if j < n && Self.isIdentStart(s[j]) {
                        j += 1
                        while j < n && Self.isIdent(s[j]) && s[j] != 0x24 { j += 1 }
                    }
                    if j < n && s[j] == 0x24 {
                        mode = .dollar(Array(s[i...j]))
                        i = j + 1
                        continue
                    }
                case 0x20, 0x09, 0x0A, 0x0D: break
                default: inStatement = true
                }
                i += 1
            case .quoted(let close, let escapes):
                // 'string', E'string' (backslash escapes) or "identifier"; a doubled closing
                // character stands for itself.
                if escapes && c == 0x5C {
                    i += 2
                    continue
                }
                if c == close {
                    if i + 1 < n && s[i + 1] == close {
                        i += 2
                        continue
                    }
                    mode = .normal
                }
                i += 1
            case .dollar(let tag):
                if c == 0x24 && n - i >= tag.count && s[i..<(i + tag.count)].elementsEqual(tag) {
                    mode = .normal
                    i += tag.count
                    continue
                }
                i += 1
            case .comment(let depth):
                if c == 0x2F && i + 1 < n && s[i + 1] == 0x2A {
                    mode = .comment(depth: depth + 1)
                    i += 2
                    continue
                }
                if c == 0x2A && i + 1 < n && s[i + 1] == 0x2F {
                    mode = depth == 1 ? .normal : .comment(depth: depth - 1)
                    i += 2
                    continue
                }
                i += 1
            }
        }
    }
}

/// Routes a plain pg_dumpall script, fed in buffers of any size, to the sessions of a
/// parallel restore. Pure: the caller owns the sessions and does what each step says, in
/// order.
package struct PostgresScriptRouter: Sendable {
    package enum Step {
        /// Script text for the one ordered session (started with `setup` when there is none).
        case main(UnsafeRawBufferPointer)
        /// The ordered session must finish what it has (the tables exist now): end it. The
        /// loading sessions start from `setup`.
        case dataBegins(setup: [UInt8])
        /// A table's data: its header line (newline included), then `rows`, then `copyEnds`.
        case copyBegins([UInt8])
        case rows(UnsafeRawBufferPointer)
        case copyEnds
        /// Every table must be loaded before what follows (sequence values, indexes,
        /// constraints): wait for the loading sessions. The next ordered session starts
        /// from `setup`.
        case dataEnds(setup: [UInt8])
    }

    /// What a session started now needs first so that it stands where the script stands:
    /// the last `\connect`, the `\restrict` in force, and the settings made since the
    /// connect (`SET`, `SELECT pg_catalog.set_config(...)`).
    var setup: [UInt8] {
        var s = connect ?? []
        if let restrict { s += restrict }
        for x in settings { s += x }
        return s
    }

    /// Top-level lines are held whole (they are statement text; table rows pass through
    /// without being held). A line longer than this ends the routing: from there on every
    /// byte goes to the ordered session, as psql alone would have read it.
    package let maxLine: Int

    private var lex = SQLLexState()
    private var line: [UInt8] = []
    private var connect: [UInt8]?
    private var restrict: [UInt8]?
    private var settings: [[UInt8]] = []
    private var inData = false
    private var inCopy = false
    /// In a COPY block: the bytes of the current row line seen so far (up to 3: enough to
    /// tell the `\.` line that ends the block).
    private var rowHead: [UInt8] = []
    private var rowStarted = false
    private var passthrough = false

    package init(maxLine: Int = PostgresDumpCounter.maxStatementLine) { self.maxLine = maxLine }

    /// Routing gave up (a top-level line longer than `maxLine`): everything goes to `main`.
    package var gaveUp: Bool { passthrough }

    package mutating func feed(_ buf: UnsafeRawBufferPointer, _ step: (Step) throws -> Void) rethrows {
        guard let base = buf.baseAddress else { return }
        let n = buf.count
        var i = 0
        while i < n {
            if passthrough {
                try step(.main(UnsafeRawBufferPointer(rebasing: buf[i..<n])))
                return
            }
            if inCopy {
                i = try copyRows(buf, from: i, step)
                continue
            }
            let nl = memchr(base + i, 0x0A, n - i).map { base.distance(to: UnsafeRawPointer($0)) }
            let end = nl.map { $0 + 1 } ?? n
            line.append(contentsOf: UnsafeRawBufferPointer(rebasing: buf[i..<end]))
            i = end
            if nl != nil {
                try topLevelLine(step)
            } else if line.count > maxLine {
                try giveUp(step)
            }
        }
    }

    /// The end of the script: a last line without its newline.
    package mutating func finish(_ step: (Step) throws -> Void) rethrows {
        if passthrough || inCopy {
            if !line.isEmpty { try line.withUnsafeBytes { try step(inCopy ? .rows($0) : .main($0)) } }
        } else if !line.isEmpty {
            try topLevelLine(step)
        }
        line.removeAll()
        if inData {
            inData = false
            try step(.dataEnds(setup: setup))
        }
    }

    private mutating func giveUp(_ step: (Step) throws -> Void) rethrows {
        if inData {
            inData = false
            try step(.dataEnds(setup: setup))
        }
        passthrough = true
        try line.withUnsafeBytes { try step(.main($0)) }
        line.removeAll()
    }

    private mutating func topLevelLine(_ step: (Step) throws -> Void) rethrows {
        defer { line.removeAll(keepingCapacity: line.capacity <= 1 << 20) }
        let boundary = lex.atBoundary
        if boundary && line.first == 0x5C {  // a meta-command: \connect, \restrict, \unrestrict
            if line.hasPrefix("\\connect ") {
                connect = line
                settings.removeAll()
            } else if line.hasPrefix("\\restrict ") {
                restrict = line
            } else if line.hasPrefix("\\unrestrict ") {
                restrict = nil
            }
        } else if boundary && Self.isCopyHeader(line) {
            if !inData {
                inData = true
                try step(.dataBegins(setup: setup))
            }
            try step(.copyBegins(line))
            inCopy = true
            rowStarted = false
            rowHead.removeAll()
            return
        } else {
            line.withUnsafeBytes { lex.feed($0) }
            if boundary && lex.atBoundary && Self.isSetting(line) { settings.append(line) }
            // Blank lines and comments between tables belong to no session.
            if inData && boundary && lex.atBoundary && Self.isBlankOrComment(line) { return }
        }
        if inData {
            inData = false
            try step(.dataEnds(setup: setup))
        }
        try line.withUnsafeBytes { try step(.main($0)) }
    }

    /// Rows of a COPY block from `buf[i...]`, through the end of the block or of `buf`; the
    /// index where the caller goes on.
    private mutating func copyRows(_ buf: UnsafeRawBufferPointer, from start: Int, _ step: (Step) throws -> Void) rethrows -> Int {
        let base = buf.baseAddress!
        let n = buf.count
        var i = start
        let runStart = start
        while i < n {
            if !rowStarted {
                // A row begins at i: is it `\.` + newline? Up to three bytes decide, and
                // they may arrive in different buffers. Nearly every row fails at its first.
                if rowHead.isEmpty && buf[i] != 0x5C {
                    rowStarted = true
                } else {
                    let have = rowHead.count
                    let take = min(3 - have, n - i)
                    var candidate = true
                    for k in 0..<(have + take) where (k < have ? rowHead[k] : buf[i + k - have]) != Self.endOfData[k] {
                        candidate = false
                        break
                    }
                    if candidate && have + take < 3 {
                        // Wait for the rest; the held bytes go out with the row if it is one.
                        if i > runStart { try step(.rows(UnsafeRawBufferPointer(rebasing: buf[runStart..<i]))) }
                        rowHead.append(contentsOf: UnsafeRawBufferPointer(rebasing: buf[i..<(i + take)]))
                        return n
                    }
                    if candidate {
                        if i > runStart { try step(.rows(UnsafeRawBufferPointer(rebasing: buf[runStart..<i]))) }
                        try step(.copyEnds)
                        inCopy = false
                        rowHead.removeAll()
                        return i + take
                    }
                    // An ordinary row: bytes held from the previous buffer go first.
                    if !rowHead.isEmpty {
                        try rowHead.withUnsafeBytes { try step(.rows($0)) }
                        rowHead.removeAll()
                    }
                    rowStarted = true
                }
            }
            guard let nl = memchr(base + i, 0x0A, n - i) else { break }
            i = base.distance(to: UnsafeRawPointer(nl)) + 1
            rowStarted = false
        }
        if n > runStart { try step(.rows(UnsafeRawBufferPointer(rebasing: buf[runStart..<n]))) }
        return n
    }

    /// The line that ends a table's rows.
    package static let endOfData: [UInt8] = [0x5C, 0x2E, 0x0A]

    /// `COPY <table> (<columns>) FROM stdin;` as pg_dump writes a table's data.
    static func isCopyHeader(_ l: [UInt8]) -> Bool {
        l.hasPrefix("COPY ") && (l.hasSuffix(" FROM stdin;\n") || l.hasSuffix(" FROM stdin;\r\n"))
    }

    static func isSetting(_ l: [UInt8]) -> Bool {
        l.hasPrefix("SET ") || l.hasPrefix("RESET ") || l.hasPrefix("SELECT pg_catalog.set_config(")
    }

    static func isBlankOrComment(_ l: [UInt8]) -> Bool {
        guard let first = l.firstIndex(where: { $0 != 0x20 && $0 != 0x09 && $0 != 0x0A && $0 != 0x0D }) else { return true }
        return l[first] == 0x2D && first + 1 < l.count && l[first + 1] == 0x2D
    }
}
