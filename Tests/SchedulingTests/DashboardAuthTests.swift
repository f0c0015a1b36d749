// Sign-ins without a server: passwords as scrypt records, the limit on failed sign-ins, and
// sessions that end when idle, at their lifetime, or when closed.
import Foundation
import Scheduling
import Testing

@Suite struct DashboardAuthTests {
    @Test func passwordsAreKeptAsScryptRecordsAndCheckedWhole() {
        let record = PasswordHash.make("correct horse battery", n: 1024)
        #expect(record.hasPrefix("scrypt$1024$8$1$") && !record.contains("correct"))
        #expect(PasswordHash.verify("correct horse battery", record))
        #expect(!PasswordHash.verify("correct horse batterz", record))
        #expect(!PasswordHash.verify("", record))
        // Two records of one password differ (salt); malformed or out-of-range ones match nothing.
        #expect(PasswordHash.make("correct horse battery", n: 1024) != record)
        for bad in [
            "", "scrypt$1024$8$1$AAAA", "bcrypt$1024$8$1$AAAA$AAAA", "scrypt$1000$8$1$AAAA$" + String(repeating: "A", count: 44),
            "scrypt$4194304$8$1$AAAA$AAAA",
        ] {
            #expect(!PasswordHash.verify("x", bad), "\(bad)")
        }
    }

    @Test func failedSignInsArePacedPerKeyAndInAll() {
        var l = SignInLimiter(perKey: 3, overall: 5, window: 60)
        let t = Date(timeIntervalSince1970: 1_000_000)
        for i in 0..<3 {
            #expect(l.wait("name:alice", now: t.addingTimeInterval(Double(i))) == nil)
            l.failed("name:alice", now: t.addingTimeInterval(Double(i)))
        }
        // The fourth waits until the first failure leaves the window.
        #expect(l.wait("name:alice", now: t.addingTimeInterval(10)) == 50)
        #expect(l.wait("name:bob", now: t.addingTimeInterval(10)) == nil)
        #expect(l.wait("name:alice", now: t.addingTimeInterval(61)) == nil)
        // Failures over many names stop everyone once `overall` is reached.
        var all = SignInLimiter(perKey: 3, overall: 5, window: 60)
        for (i, name) in ["a", "b", "c", "d", "e"].enumerated() { all.failed("name:\(name)", now: t.addingTimeInterval(Double(i))) }
        #expect(all.wait("name:dave", now: t.addingTimeInterval(22)) == 38)
        #expect(all.wait("name:dave", now: t.addingTimeInterval(61)) == nil)
        // A good sign-in forgets its key's failures.
        var m = SignInLimiter(perKey: 2, overall: 100, window: 60)
        m.failed("token", now: t)
        m.succeeded("token")
        m.failed("token", now: t)
        #expect(m.wait("token", now: t) == nil)
    }

    @Test func sessionsEndWhenIdleAtTheirLifetimeOrClosed() async {
        let sessions = DashboardSessions(idle: 60, lifetime: 300)
        let t = Date(timeIntervalSince1970: 1_000_000)
        let (cookie, s) = await sessions.open(tokenID: "abc", now: t)
        #expect(cookie.count == 64 && s.csrf.count == 64 && cookie != s.csrf)
        #expect(await sessions.session(cookie, now: t.addingTimeInterval(50))?.tokenID == "abc")
        // Each request starts the idle time again, up to the lifetime.
        #expect(await sessions.session(cookie, now: t.addingTimeInterval(100)) != nil)
        #expect(await sessions.session(cookie, now: t.addingTimeInterval(161)) == nil)
        let (second, _) = await sessions.open(tokenID: "abc", now: t)
        for i in 1...5 { #expect(await sessions.session(second, now: t.addingTimeInterval(Double(i) * 55)) != nil) }
        #expect(await sessions.session(second, now: t.addingTimeInterval(301)) == nil)
        let (third, _) = await sessions.open(tokenID: "abc", now: t)
        await sessions.close(third)
        #expect(await sessions.session(third, now: t) == nil)
        #expect(await sessions.session("not-a-session", now: t) == nil)
    }
}
