// Signing in to the dashboard (docs/api.md, "The dashboard"): with an API token, or with a
// token's name and the password set on it (`stowage token create --password-stdin`). A
// sign-in opens a session: a random id in an HttpOnly, SameSite=Strict cookie, kept by the
// scheduler in memory as its SHA-256 (a restart signs everyone out), with a CSRF token that
// every mutating request of the session must carry. Failed sign-ins are limited per name
// and in all, so a password cannot be guessed at the speed of the listener.
@preconcurrency import Crypto
import Foundation
import Repository
import Support

/// A password as the catalog keeps it: `scrypt$N$r$p$salt$hash` (base64), never the password.
/// scrypt is slow on purpose (a password has far less entropy than a token); callers run it
/// on a thread of their own.
package enum PasswordHash {
    /// The shortest password accepted.
    package static let minimumLength = 12

    package static func make(_ password: String, n: Int = 32768) -> String {
        var g = SystemRandomNumberGenerator()
        let salt = (0..<16).map { _ in UInt8.random(in: 0...255, using: &g) }
        return "scrypt$\(n)$8$1$\(Data(salt).base64EncodedString())$\(derive(password, salt: salt, n: n, r: 8, p: 1).base64EncodedString())"
    }

    /// Whether `password` matches `stored`; a malformed or out-of-range record matches nothing.
    package static func verify(_ password: String, _ stored: String) -> Bool {
        let f = stored.split(separator: "$").map(String.init)
        guard f.count == 6, f[0] == "scrypt", let n = Int(f[1]), let r = Int(f[2]), let p = Int(f[3]),
            // At most 128·r·N = 256 MiB of memory, whatever a record says.
            (1024...1 << 17).contains(n), n & (n - 1) == 0, (1...16).contains(r), (1...4).contains(p),
            let salt = Data(base64Encoded: f[4]), let want = Data(base64Encoded: f[5]), want.count == 32
        else { return false }
        let got = derive(password, salt: Array(salt), n: n, r: r, p: p)
        // Every byte compared, whatever the first difference.
        return zip(got, want).reduce(UInt8(0)) { $0 | ($1.0 ^ $1.1) } == 0
    }

    static func derive(_ password: String, salt: [UInt8], n: Int, r: Int, p: Int) -> Data {
        KeyFile.derive(password, salt: salt, n: n, r: r, p: p).withUnsafeBytes { Data($0) }
    }
}

/// How many failed sign-ins are let through: per key (a name, or the token form) at most
/// `perKey` in `window`, and at most `overall` in all; past that, sign-ins wait. Pure: the
/// caller keeps it and passes the time.
package struct SignInLimiter: Sendable {
    package var perKey: Int
    package var overall: Int
    package var window: TimeInterval
    private var failures: [String: [Date]] = [:]
    private var all: [Date] = []

    package init(perKey: Int = 5, overall: Int = 50, window: TimeInterval = 900) {
        self.perKey = perKey
        self.overall = overall
        self.window = window
    }

    /// Nil when a sign-in for `key` may be tried now; else how long until it may.
    package mutating func wait(_ key: String, now: Date) -> TimeInterval? {
        prune(now)
        let mine = failures[key] ?? []
        var until: Date?
        if mine.count >= perKey { until = mine[mine.count - perKey].addingTimeInterval(window) }
        if all.count >= overall { until = max(until ?? .distantPast, all[all.count - overall].addingTimeInterval(window)) }
        return until.map { max(1, $0.timeIntervalSince(now).rounded(.up)) }
    }

    package mutating func failed(_ key: String, now: Date) {
        prune(now)
        failures[key, default: []].append(now)
        all.append(now)
    }

    /// A good sign-in forgets that key's failures (not the overall count).
    package mutating func succeeded(_ key: String) { failures[key] = nil }

    private mutating func prune(_ now: Date) {
        let since = now.addingTimeInterval(-window)
        all.removeAll { $0 <= since }
        for (k, v) in failures {
            let kept = v.filter { $0 > since }
            failures[k] = kept.isEmpty ? nil : kept
        }
    }
}

/// A dashboard session: whose token it acts as, and the CSRF token its pages carry.
package struct DashboardSession: Sendable, Equatable {
    package var tokenID: String
    package var csrf: String
    package var created: Date
    package var seen: Date
}

/// The open sessions, by the SHA-256 of their cookie (a memory dump shows no usable cookie).
/// A session ends when signed out, after `idle` without a request, after `lifetime` in all,
/// and with its token (revoked tokens are checked on every request by the caller).
package actor DashboardSessions {
    package let idle: TimeInterval
    package let lifetime: TimeInterval
    private var sessions: [String: DashboardSession] = [:]
    private var limiter = SignInLimiter()

    package init(idle: TimeInterval = 3600, lifetime: TimeInterval = 12 * 3600) {
        self.idle = idle
        self.lifetime = lifetime
    }

    /// A new session for `tokenID`: the cookie's value and the session.
    package func open(tokenID: String, now: Date = Date()) -> (cookie: String, session: DashboardSession) {
        let cookie = Self.random()
        let s = DashboardSession(tokenID: tokenID, csrf: Self.random(), created: now, seen: now)
        sessions[APIToken.hash(cookie)] = s
        return (cookie, s)
    }

    /// The session of `cookie`, if open; its idle time starts again.
    package func session(_ cookie: String, now: Date = Date()) -> DashboardSession? {
        let key = APIToken.hash(cookie)
        guard var s = sessions[key] else { return nil }
        guard now.timeIntervalSince(s.seen) < idle, now.timeIntervalSince(s.created) < lifetime else {
            sessions[key] = nil
            return nil
        }
        s.seen = now
        sessions[key] = s
        return s
    }

    package func close(_ cookie: String) { sessions[APIToken.hash(cookie)] = nil }

    package func wait(_ key: String, now: Date = Date()) -> TimeInterval? { limiter.wait(key, now: now) }
    package func failed(_ key: String, now: Date = Date()) { limiter.failed(key, now: now) }
    package func succeeded(_ key: String) { limiter.succeeded(key) }

    static func random() -> String {
        var g = SystemRandomNumberGenerator()
        return hexString((0..<32).map { _ in UInt8.random(in: 0...255, using: &g) })
    }
}
