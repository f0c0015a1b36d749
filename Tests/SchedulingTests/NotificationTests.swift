// Notifications without a network: which targets get which event, what the body is in each
// format, the signature a receiver checks, and the inventory's routes and their mistakes.
@preconcurrency import Crypto
import Fleet
import Foundation
import Scheduling
import Support
import Testing

@Suite struct NotificationTests {
    let inventory = """
        notifications:
          webhook: https://hooks.example.invalid/all
          secret_file: /etc/stowage/credentials/webhook-secret
          retries: 2
          routes:
            - { match: shop, webhook: https://chat.example.invalid/hook, format: slack, events: [backup-stale, run-failed] }
            - { match: [staging/cache], command: "logger -t stowage", events: backup-succeeded }
        environments:
          shop:
            layers:
              sqldb: { engine: redis, nodes: [ { name: n1, db: h1 } ] }
          staging:
            layers:
              cache: { engine: redis, nodes: [ { name: n2, db: h2 } ] }
        """

    func event(_ kind: NotificationEvent.Kind, _ layer: String) -> NotificationEvent {
        NotificationEvent(
            event: kind, layer: layer, storage: "lab", time: "2026-12-06T03:00:00Z", message: "newest backup is 3 h old",
            hint: "stowage backup \(layer)", exitCode: nil, attempt: 0, backup: nil, coordinator: "c1")
    }

    @Test func eachTargetGetsTheLayersAndEventsItAsksFor() throws {
        let n = try Inventory.parse(inventory, file: "i.yaml").notifications
        #expect(n.targets.count == 3 && n.retries == 2)
        func hooks(_ e: String, _ l: String) -> [String] { n.targets(for: e, layer: l).map { $0.webhook ?? $0.command ?? "" } }
        #expect(hooks("backup-stale", "shop/sqldb") == ["https://hooks.example.invalid/all", "https://chat.example.invalid/hook"])
        #expect(hooks("storage-degraded", "shop/sqldb") == ["https://hooks.example.invalid/all"])
        // Success is opt-in: only the target that lists it, and only for its layer.
        #expect(hooks("backup-succeeded", "shop/sqldb").isEmpty)
        #expect(hooks("backup-succeeded", "staging/cache") == ["logger -t stowage"])
        #expect(hooks("backup-stale", "staging/cache") == ["https://hooks.example.invalid/all"])
    }

    @Test func slackGetsTextAndTheDocumentIsTheSchema() throws {
        let e = event(.backupStale, "shop/sqldb")
        let slack = try #require(try JSONSerialization.jsonObject(with: e.body(.slack)) as? [String: String])
        #expect(slack.keys.sorted() == ["text"])
        #expect(slack["text"] == "stowage backup-stale: shop/sqldb (storage lab): newest backup is 3 h old\nhint: stowage backup shop/sqldb")
        let doc = try #require(try JSONSerialization.jsonObject(with: e.body(.json)) as? [String: Any])
        #expect(doc["event"] as? String == "backup-stale" && doc["version"] as? Int == 2 && doc["layer"] as? String == "shop/sqldb")
        // The schema in docs/ names every field the document has, and every event.
        let schema = try #require(
            try JSONSerialization.jsonObject(
                with: Data(
                    contentsOf: URL(fileURLWithPath: #filePath)
                        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
                        .appendingPathComponent("docs/json/notification.schema.json"))) as? [String: Any])
        let properties = try #require(schema["properties"] as? [String: Any])
        for key in doc.keys { #expect(properties[key] != nil, "\(key) is not in the schema") }
        let events = ((properties["event"] as? [String: Any])?["enum"] as? [String]) ?? []
        #expect(Set(events) == Set(NotificationTarget.eventNames))
    }

    @Test func theSignatureIsHMACSHA256OfTheBody() {
        let body = Data(#"{"event":"run-failed"}"#.utf8)
        let key = Array("webhook-secret".utf8)
        let expected = "sha256=" + HMAC<SHA256>.authenticationCode(for: body, using: SymmetricKey(data: key)).map { String(format: "%02x", $0) }.joined()
        #expect(NotificationEvent.signature(body: body, key: key) == expected)
        #expect(NotificationEvent.signature(body: body, key: Array("other".utf8)) != expected)
    }

    @Test func mistakesInTheRoutesNameTheirLine() {
        for (bad, says) in [
            ("notifications: { routes: [ { match: shop, format: slack } ] }", "needs a webhook or a command"),
            ("notifications: { webhook: https://h.invalid/x, events: [backup-late] }", "unknown event 'backup-late'"),
            ("notifications: { webhook: https://h.invalid/x, format: xml }", "must be json or slack"),
            ("notifications: { format: slack }", "needs a webhook or a command beside it"),
            ("notifications: { routes: [ { match: a/b/c, command: x } ] }", "is not ENV or ENV/LAYER"),
        ] {
            let text = bad + "\nenvironments: { e: { layers: { c: { engine: redis, nodes: [ { name: n1, db: h1 } ] } } } }\n"
            #expect {
                _ = try Inventory.parse(text, file: "i.yaml")
            } throws: { error in
                guard let e = error as? StowageError else { return false }
                return e.message.hasPrefix("i.yaml:1:") && e.message.contains(says)
            }
        }
    }
}
