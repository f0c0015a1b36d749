// sd_notify's protocol against a real datagram socket, as systemd would hold it: a path and
// an abstract name both receive the message whole; no $NOTIFY_SOCKET sends nothing.
import Foundation
import Support
import TestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

@Suite struct SystemdNotifyTests {
    @Test(arguments: [false, true]) func theManagerReceivesTheMessageWhole(abstract: Bool) throws {
        let r = try NotifyReceiver(abstract: abstract)
        #expect(SystemdNotify.send("READY=1\nSTATUS=3 enabled policies", environment: ["NOTIFY_SOCKET": r.name]))
        #expect(r.receive() == "READY=1\nSTATUS=3 enabled policies")
        #expect(SystemdNotify.send("STOPPING=1", environment: ["NOTIFY_SOCKET": r.name]))
        #expect(r.receive() == "STOPPING=1")
    }

    @Test func withoutSystemdNothingIsSent() {
        #expect(!SystemdNotify.send("READY=1", environment: [:]))
        #expect(!SystemdNotify.send("READY=1", environment: ["NOTIFY_SOCKET": "relative/path"]))
        #expect(!SystemdNotify.send("READY=1", environment: ["NOTIFY_SOCKET": "/nonexistent/stowage-notify"]))
    }
}
