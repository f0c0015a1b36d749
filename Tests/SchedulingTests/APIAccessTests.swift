// Who may do what over HTTP, decided without a server: the whole matrix of roles, actions
// and scopes, and tokens that are random, prefixed, and stored only as their hash. The same
// catalog that keeps them is exercised on a file in a temporary folder.
import Foundation
import Scheduling
import Testing

@Suite struct APIAccessTests {
    let viewer = APIPrincipal(tokenID: "v1", name: "panel", role: .viewer)
    let shopOperator = APIPrincipal(tokenID: "o1", name: "shop-ops", role: .operator, environments: ["shop"])
    let anyOperator = APIPrincipal(tokenID: "o2", name: "ops", role: .operator)
    let admin = APIPrincipal(tokenID: "a1", name: "root", role: .admin)

    @Test(arguments: APIAction.allCases)
    func theMatrixHolds(_ action: APIAction) {
        // Admins: everything, anywhere.
        #expect(APIAccess.decide(admin, action, environment: "shop") == .allowed)
        #expect(APIAccess.decide(admin, action, environment: nil) == .allowed)
        // Viewers: reading only.
        #expect((APIAccess.decide(viewer, action, environment: "shop") == .allowed) == (action == .read))
        // Operators: reading, the audit trail, and backup/restore within their scope only.
        let operatorMay: Set<APIAction> = [.read, .readAudit, .backup, .restore]
        #expect((APIAccess.decide(shopOperator, action, environment: "shop") == .allowed) == operatorMay.contains(action))
        #expect((APIAccess.decide(anyOperator, action, environment: "fleet") == .allowed) == operatorMay.contains(action))
        let elsewhere = APIAccess.decide(shopOperator, action, environment: "fleet")
        #expect((elsewhere == .allowed) == [.read, .readAudit].contains(action))
    }

    @Test func refusalsSayWhy() {
        guard case .denied(let a) = APIAccess.decide(shopOperator, .backup, environment: "fleet") else { Issue.record("allowed"); return }
        #expect(a.contains("operator of shop, not of fleet") && a.contains("o1"))
        guard case .denied(let b) = APIAccess.decide(viewer, .restore, environment: "shop") else { Issue.record("allowed"); return }
        #expect(b.contains("viewer"))
        guard case .denied(let c) = APIAccess.decide(anyOperator, .install, environment: "shop") else { Issue.record("allowed"); return }
        #expect(c.contains("admin"))
        #expect(APIAction.allCases.filter { !$0.mutates } == [.read, .readAudit])
    }

    @Test func tokensAreRandomPrefixedAndKeptAsHashes() {
        let (a, secretA) = APIToken.generate(name: "x", role: .viewer, environments: [])
        let (b, secretB) = APIToken.generate(name: "x", role: .viewer, environments: [])
        #expect(secretA.hasPrefix(APIToken.prefix) && secretA.count >= APIToken.prefix.count + 43)
        #expect(secretA != secretB && a.id != b.id && a.id.count == 12)
        #expect(a.hash == APIToken.hash(secretA) && a.hash.count == 64 && !a.hash.contains(secretA))
        #expect(!secretA.contains("+") && !secretA.contains("/") && !secretA.contains("="))
    }

    @Test func theCatalogKeepsTokensAndTheAuditTrail() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("api-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let catalog = try await RunCatalog.open(path: "\(dir)/catalog.sqlite")
        let (t, secret) = APIToken.generate(name: "ops", role: .operator, environments: ["shop", "fleet"])
        try await catalog.addToken(t)
        let found = try await catalog.activeToken(hash: APIToken.hash(secret))
        #expect(found?.principal == APIPrincipal(tokenID: t.id, name: "ops", role: .operator, environments: ["shop", "fleet"]))
        #expect(try await catalog.activeToken(hash: APIToken.hash(secret + "x")) == nil)
        #expect(try await catalog.revokeToken(id: t.id, at: Date()))
        #expect(try await !catalog.revokeToken(id: t.id, at: Date()))
        #expect(try await catalog.activeToken(hash: APIToken.hash(secret)) == nil)
        #expect(try await catalog.tokens().first?.revoked != nil)

        for i in 0..<3 {
            try await catalog.audit(
                AuditRecord(
                    at: Date(), tokenID: t.id, tokenName: "ops", method: "POST", path: "/api/v1/layers/shop/db/backup", action: "backup",
                    target: "shop/db", status: 202 + i, outcome: "ok", detail: nil))
        }
        let trail = try await catalog.auditTrail(limit: 2)
        #expect(trail.map(\.status) == [204, 203])
    }
}
