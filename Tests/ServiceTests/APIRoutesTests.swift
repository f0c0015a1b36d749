// The API's pure decisions: which refusal is which HTTP status, and which listener may serve
// calls that change something.
import Service
import Support
import Testing

@Suite struct APIRoutesTests {
    @Test func refusalsMapToStatuses() {
        #expect(APIRoutes.status(for: StowageError(.usage, "x")).code == 400)
        #expect(APIRoutes.status(for: StowageError(.locked, "x")).code == 409)
        #expect(APIRoutes.status(for: StowageError(.unsafeTopology, "x")).code == 409)
        #expect(APIRoutes.status(for: StowageError(.nodeUnreachable, "x")).code == 502)
        #expect(APIRoutes.status(for: StowageError(.internalError, "x")).code == 500)
    }

    @Test func onlyLoopbackListenersServeChangesOverPlainHTTP() {
        for h in ["127.0.0.1", "127.3.4.5", "::1", "localhost"] { #expect(APIRoutes.isLoopback(h), "\(h)") }
        for h in ["0.0.0.0", "10.0.0.5", "::", "example.org"] { #expect(!APIRoutes.isLoopback(h), "\(h)") }
    }
}
