import Foundation
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

@Suite struct OpenAPIDocumentTests {
    /// docs/openapi.json describes every endpoint the API mounts, and nothing else.
    @Test func theDocumentListsEveryEndpoint() throws {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("docs/openapi.json")
        let doc = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any])
        #expect((doc["openapi"] as? String)?.hasPrefix("3.") == true)
        let paths = try #require(doc["paths"] as? [String: [String: Any]])
        var documented: Set<String> = []
        for (path, methods) in paths { for m in methods.keys { documented.insert("\(m.uppercased()) \(path)") } }
        #expect(documented == Set(APIRoutes.endpoints.map { "\($0.method) \($0.path)" }))
        // Every operation says what a refused request gets.
        for (_, methods) in paths {
            for (_, op) in methods {
                let responses = (op as? [String: Any])?["responses"] as? [String: Any] ?? [:]
                #expect(responses["401"] != nil)
            }
        }
    }
}
