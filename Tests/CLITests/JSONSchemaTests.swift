// The published schemas (docs/json/) are well formed and use only what the checker checks,
// the checker finds what is wrong, and documents the CLI makes without a lab conform.
import Foundation
import TestSupport
import Testing

@Suite struct JSONSchemaTests {
    static let names = ((try? FileManager.default.contentsOfDirectory(atPath: Repo.path("docs/json"))) ?? [])
        .filter { $0.hasSuffix(".schema.json") }.map { String($0.dropLast(".schema.json".count)) }.sorted()

    @Test func everySchemaParsesAndUsesOnlyCheckedKeywords() throws {
        #expect(Self.names.count >= 17, "\(Self.names)")
        for name in Self.names {
            let schema = try JSONSchema.load(name)
            #expect(schema["$schema"] as? String == "https://json-schema.org/draft/2020-12/schema", "\(name)")
            #expect(JSONSchema.unsupported(schema).isEmpty, "\(name): \(JSONSchema.unsupported(schema))")
        }
    }

    @Test func theCheckerFindsWhatIsWrong() throws {
        let good = #"{"schedule":"30 2 * * *","timeZone":"UTC","nextRuns":["2026-12-07T02:30:00Z"]}"#
        #expect(try JSONSchema.problems(good, schema: "schedule-explain") == [])
        let problems = try JSONSchema.problems(#"{"schedule":3,"nextRuns":["x",1],"next_runs":[]}"#, schema: "schedule-explain")
        #expect(
            problems.sorted()
                == [
                    "$.nextRuns[1]: integer, the schema says string", "$.schedule: integer, the schema says string", "$: next_runs is not in the schema",
                    "$: timeZone is missing",
                ].sorted(), "\(problems)")
        // Enums, constants, patterns and minimums, through $ref.
        let note = #"{"version":1,"event":"backup-late","layer":"shop","storage":"s","time":"t","message":"m","attempt":-1,"coordinator":"c","exitCode":1.5}"#
        let p = try JSONSchema.problems(note, schema: "notification")
        #expect(p.contains("$.version: 1, the schema says 2"), "\(p)")
        #expect(p.contains { $0.hasPrefix("$.event: 'backup-late' is not one of") }, "\(p)")
        #expect(p.contains { $0.hasPrefix("$.layer: 'shop' does not match") }, "\(p)")
        #expect(p.contains("$.attempt: -1 < 0.0"), "\(p)")
        #expect(p.contains("$.exitCode: number, the schema says integer"), "\(p)")
        #expect(
            JSONSchema.unsupported(["type": "object", "oneOf": [] as [Any], "properties": ["a": ["anyOf": [] as [Any]]]]) == [
                "#/properties/a: anyOf", "#: oneOf",
            ])
    }

    @Test func scheduleExplainConforms() throws {
        let r = try runCommand(
            Repo.stowage, ["schedule", "explain", "--time", "03:30", "--days", "mon-fri", "--tz", "Europe/Berlin", "--count", "3", "--json"])
        #expect(r.status == 0, "\(r.stderr)")
        try JSONSchema.validate(r.stdout, schema: "schedule-explain")
    }
}
