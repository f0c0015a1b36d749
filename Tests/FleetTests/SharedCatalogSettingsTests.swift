// scheduler.shared_catalog: read from the inventory, every mistake one line with its place.
import Foundation
import Support
import Testing

@testable import Fleet

@Suite struct SharedCatalogSettingsTests {
    let base = """
        environments:
          shop:
            layers:
              cache:
                engine: redis
                nodes: [ { name: n1, ssh: root@10.0.1.10, db: 10.0.1.10:6379 } ]
        scheduler:

        """

    func parse(_ catalog: String) throws(StowageError) -> SchedulerSettings {
        try Inventory.parse(base + "  shared_catalog: \(catalog)\n", file: "inv.yaml").scheduler
    }

    func problem(_ catalog: String) -> String? {
        do {
            _ = try parse(catalog)
            return nil
        } catch {
            return error.message
        }
    }

    @Test func aCatalogIsReadWithItsDefaults() throws {
        let s = try parse("{ postgresql: \"host=10.0.0.5 user=coord\", password_file: /etc/stowage/catalog }")
        let c = try #require(s.sharedCatalog)
        #expect(c.host == "10.0.0.5" && c.port == 5432 && c.database == "stowage" && c.user == "coord" && c.lease == 10)
        #expect(c.credentials.user == "coord")
        #expect(c.credentials.password == .file("/etc/stowage/catalog"))
        let full = try #require(try parse("{ postgresql: \"host=db port=6543 dbname=fleet user=u\", password_env: CAT, lease: 30s }").sharedCatalog)
        #expect(full.port == 6543 && full.database == "fleet" && full.lease == 30 && full.credentials.password == .environment("CAT"))
        // Absent: one coordinator alone.
        #expect(try Inventory.parse(base, file: "inv.yaml").scheduler.sharedCatalog == nil)
    }

    @Test func mistakesAreNamedWithTheirPlace() {
        #expect(problem("{ postgresql: \"host=db\" }")?.hasPrefix("inv.yaml:") == true)
        #expect(problem("{ postgresql: \"host=db\" }")?.contains("has no password") == true)
        #expect(problem("{ postgresql: \"host=db password=x\", password_file: /p }")?.contains("a password does not go into the connection string") == true)
        #expect(problem("{ postgresql: \"host=db port=99999\", password_file: /p }")?.contains("port '99999' is not a port number") == true)
        #expect(problem("{ postgresql: \"host=db sslmode=require\", password_file: /p }")?.contains("unknown keyword 'sslmode'") == true)
        #expect(problem("{ postgresql: \"port=5432\", password_file: /p }")?.contains("no host=") == true)
        #expect(problem("{ postgresql: \"host=db\", password_file: /p, lease: 1s }")?.contains("lease must be 3s to 300s") == true)
        #expect(problem("{ postgresql: \"host=db\", password: hunter2 }")?.contains("plain-text passwords are not accepted") == true)
        #expect(problem("{ password_file: /p }")?.contains("has no 'postgresql'") == true)
    }
}
