// A storage that mixes SSH nodes and buckets under one write quorum, through the CLI as an
// operator runs it: a backup lands on every replica (a store that is down is reported as a
// missing replica while the quorum commits), the backups list shows the buckets among the
// replicas, verify finds an object a bucket lost and repair copies it back from a node, a
// restore reads through the mix, and `agent check` reports each bucket.
import Foundation
import TestSupport
import Testing

@testable import Operations
@testable import Storage

private func fl15(_ args: [String]) throws -> String {
    try runCommand("/usr/bin/redis-cli", ["-h", "127.0.5.15", "-p", "6379"] + args, env: ["REDISCLI_AUTH": try Lab.secret("redis-password")]).stdout
        .trimmingCharacters(in: .whitespacesAndNewlines)
}

extension LabSuites.SchedulerDaemon {
    @Test func aStorageOfSSHNodesAndBucketsBacksUpVerifiesRepairsAndRestores() async throws {
        let prefix = "mixed-\(UUID().uuidString.prefix(8).lowercased())"
        let keys = "\(Lab.dir)/secrets/s3-keys"
        let lab = try FleetLab(
            fleet: ["fl15"], shop: false, scheduler: "start_delay: 0s",
            extraStorageNodes: [
                "{ name: sw1, s3: { endpoint: \"http://127.0.9.21:8333\", bucket: stowage-lab, prefix: \(prefix), access_key_file: \(keys) } }",
                "{ name: rcl, s3: { endpoint: \"http://127.0.9.23:8335\", bucket: stowage-lab, prefix: \(prefix), access_key_file: \(keys) } }",
                // A store that is down (nothing listens there).
                "{ name: sw9, s3: { endpoint: \"http://127.0.9.29:8333\", bucket: stowage-lab, prefix: \(prefix), access_key_file: \(keys) } }",
            ], quorum: 3)
        defer { lab.cleanup() }
        // The buckets exist (an operator makes them once).
        for (node, endpoint) in labS3Stores where node != "sw2" { _ = try await labBucket(node, endpoint, prefix: prefix) }
        #expect(try runCommand(Repo.stowage, ["agent", "install", "--config", lab.inventory]).status == 0)

        // agent check: the SSH nodes and the buckets that answer are fine; the one that is
        // down is named, with the exit code of an unreachable node.
        let check = try runCommand(Repo.stowage, ["agent", "check", "fleet-storage", "--json", "--config", lab.inventory])
        #expect(check.status == 5, "\(check.stdout)\(check.stderr)")
        let checks = (try JSONSerialization.jsonObject(with: Data(check.stdout.utf8)) as? [[String: Any]]) ?? []
        let verdict = Dictionary(uniqueKeysWithValues: checks.map { ($0["node"] as? String ?? "", $0["problem"] as? String ?? "ok") })
        #expect(verdict["st1"] == "ok" && verdict["sw1"] == "ok" && verdict["rcl"] == "ok", "\(verdict) \(check.stdout) \(check.stderr)")
        #expect(verdict["sw9"]?.hasPrefix("sw9 (bucket stowage-lab at http://127.0.9.29:8333)") == true, "\(verdict)")

        _ = try fl15(["FLUSHALL"])
        for i in 0..<200 { _ = try fl15(["SET", "order:\(i)", "shipped-\(i)"]) }
        // The backup commits on four of five replicas (quorum 3) and names the missing one.
        let backup = try runCommand(Repo.stowage, ["backup", "fleet/r15", "--json", "--config", lab.inventory])
        #expect(backup.status == 2, "\(backup.stdout) \(backup.stderr)")
        let made = (try JSONSerialization.jsonObject(with: Data(backup.stdout.utf8)) as? [String: Any]) ?? [:]
        let name = try #require(made["backup"] as? String, "\(backup.stdout) \(backup.stderr)")
        #expect((made["missingReplicas"] as? [String: String])?.keys.sorted() == ["sw9"], "\(backup.stdout)")
        // The backups list says sw9 could not be asked (exit 2), and shows the rest.
        let list = try runCommand(Repo.stowage, ["backups", "fleet", "--json", "--config", lab.inventory])
        #expect(list.status == 2, "\(list.stderr)")
        let entries = try JSONDecoder().decode([BackupEntry].self, from: Data(list.stdout.utf8))
        let listed = try #require(entries.first { $0.name == name })
        #expect(Set(listed.replicas) == ["st1", "st2", "sw1", "rcl"] && listed.unreachable == ["sw9"], "\(listed)")

        // A chunk lost on one bucket: verify names it; repair copies it back from a node.
        let bucket = try await labBucket("sw1", "http://127.0.9.21:8333", prefix: prefix)
        let inFleet = S3Bucket(name: "sw1", location: bucket.location, credentials: try labS3Credentials(), environment: "fleet")
        let chunk = try #require(try await inFleet.list(prefix: "chunks").first)
        #expect(try await inFleet.delete([chunk.name]) == 1)
        let verify = try runCommand(Repo.stowage, ["storage", "verify", "fleet-storage", "--json", "--config", lab.inventory])
        #expect(verify.status != 0 && verify.stdout.contains(chunk.name), "\(verify.stdout) \(verify.stderr)")
        let repair = try runCommand(Repo.stowage, ["storage", "repair", "fleet-storage", "--json", "--config", lab.inventory])
        #expect(repair.stdout.contains("sw1"), "\(repair.stdout) \(repair.stderr)")
        #expect(try await inFleet.get([chunk.name]).missing.isEmpty, "\(repair.stdout)")

        // The data damaged, then restored through the mix.
        _ = try fl15(["FLUSHALL"])
        let restore = try runCommand(Repo.stowage, ["restore", "fleet/r15", "--backup", name, "--yes", "--config", lab.inventory])
        #expect(restore.status == 0 || restore.status == 2, "\(restore.stderr)")
        #expect(try fl15(["GET", "order:199"]) == "shipped-199" && (try fl15(["DBSIZE"])) == "200")

        // Prune across the mix: every replica that answers is pruned, the dead one is named as
        // skipped (exit 5: it keeps its leftovers); the committed backup's chunks stay.
        let prune = try runCommand(Repo.stowage, ["storage", "prune", "fleet-storage", "--json", "--config", lab.inventory])
        #expect(prune.status == 5 && prune.stderr.contains("sw9 not pruned"), "\(prune.stdout) \(prune.stderr)")
        let pruned = ((try JSONSerialization.jsonObject(with: Data(prune.stdout.utf8)) as? [[String: Any]])?.first) ?? [:]
        #expect((pruned["removed"] as? [String: Int]).map { Set($0.keys) } == ["st1", "st2", "sw1", "rcl"], "\(prune.stdout)")
        #expect((pruned["skipped"] as? [String: String]).map { Array($0.keys) } == ["sw9"], "\(prune.stdout)")
        #expect(try await inFleet.get([chunk.name]).missing.isEmpty)
        // A new storage password: keys re-wrapped on the SSH nodes and the buckets alike; with
        // it, the backup lists from every replica that answers and restores again.
        let newPassword = "\(lab.dir)/new-storage-password"
        FileManager.default.createFile(
            atPath: newPassword, contents: Data("a-new-password-\(UUID().uuidString)\n".utf8), attributes: [.posixPermissions: 0o600])
        let passwd = try runCommand(
            Repo.stowage, ["storage", "passwd", "fleet-storage", "--new-password-file", newPassword, "--json", "--config", lab.inventory])
        #expect([0, 2].contains(passwd.status), "\(passwd.stdout) \(passwd.stderr)")
        let text = try String(contentsOfFile: lab.inventory, encoding: .utf8)
        try text.replacingOccurrences(of: "\(Lab.dir)/secrets/storage-password", with: newPassword).write(
            toFile: lab.inventory, atomically: true, encoding: .utf8)
        let after = try runCommand(Repo.stowage, ["backups", "fleet", "--json", "--config", lab.inventory])
        let again = try JSONDecoder().decode([BackupEntry].self, from: Data(after.stdout.utf8)).first { $0.name == name }
        #expect(again.map { Set($0.replicas) } == ["st1", "st2", "sw1", "rcl"], "\(after.stdout) \(after.stderr)")
        _ = try fl15(["FLUSHALL"])
        let second = try runCommand(Repo.stowage, ["restore", "fleet/r15", "--backup", name, "--yes", "--config", lab.inventory])
        let keysBack = try fl15(["DBSIZE"])
        #expect([0, 2].contains(second.status) && keysBack == "200", "\(second.stderr)")
    }
}

extension LabSuites.SchedulerDaemon {
    @Test func anS3StoreStoppedMidBackupIsAMissingReplicaAndRepairFillsItIn() async throws {
        let prefix = "stop-\(UUID().uuidString.prefix(8).lowercased())"
        // sw2 behind a proxy that forwards the backup's first chunk, then dies: the store is
        // gone in the middle of the backup, whatever the timing.
        let port = API.freePort(20000...24999)
        func proxy(_ args: [String]) async throws -> BackgroundProcess { try await startS3Proxy(port: port, upstream: "127.0.9.22:8334", args) }
        let lab = try FleetLab(
            fleet: ["fl17"], shop: false, scheduler: "start_delay: 0s",
            extraStorageNodes: [
                "{ name: sw2, s3: { endpoint: \"http://127.0.0.1:\(port)\", bucket: stowage-lab, prefix: \(prefix), access_key_file: \(Lab.dir)/secrets/s3-keys, lease_seconds: 6 } }"
            ], quorum: 2)
        defer { lab.cleanup() }
        let bucket = try await labBucket("sw2", "http://127.0.9.22:8334", prefix: prefix)
        let inFleet = S3Bucket(name: "sw2", location: bucket.location, credentials: try labS3Credentials(), environment: "fleet")
        #expect(try runCommand(Repo.stowage, ["agent", "install", "--config", lab.inventory]).status == 0)
        for i in 0..<300 { _ = try FleetLab.redis("fl17", ["SET", "order:\(i)", "shipped-\(i)-\(UUID().uuidString)"]) }
        defer { FleetLab.empty("fl17") }

        let dying = try await proxy(["--die-after-chunk"])
        defer { dying.signal(SIGKILL) }
        let backup = try runCommand(Repo.stowage, ["backup", "fleet/r17", "--json", "--config", lab.inventory])
        // The quorum (st1, st2) commits it; sw2 is reported as a missing replica, named.
        #expect(backup.status == 2, "\(backup.stdout) \(backup.stderr)")
        #expect(dying.wait(timeout: 1) == 0, "the proxy did not see a chunk: \(dying.output)")
        let made = (try? JSONSerialization.jsonObject(with: Data(backup.stdout.utf8)) as? [String: Any]) ?? [:]
        let name = try #require(made["backup"] as? String, "\(backup.stdout) \(backup.stderr)")
        #expect((made["missingReplicas"] as? [String: String])?["sw2"]?.contains("sw2") == true, "\(backup.stdout)")
        // The store holds the chunk it got, and no manifest: the backup is not there.
        #expect(try await inFleet.list(prefix: "chunks").count >= 1)
        #expect(try await inFleet.list(prefix: "backups").isEmpty)
        func listed() throws -> (Int32, BackupEntry?) {
            let r = try runCommand(Repo.stowage, ["backups", "fleet", "--json", "--config", lab.inventory])
            return (r.status, try JSONDecoder().decode([BackupEntry].self, from: Data(r.stdout.utf8)).first { $0.name == name })
        }
        // Back (the proxy again, passing everything): listed as missing there (exit 2) until
        // repair copies it from the SSH nodes; then it is whole on all three.
        let healed = try await proxy([])
        defer { healed.signal(SIGKILL) }
        let (degraded, before) = try listed()
        #expect(degraded == 2 && before?.replicas.sorted() == ["st1", "st2"] && before?.missingOn == ["sw2"], "\(String(describing: before))")
        // The backup could not remove its lease while the store was gone: the lease holds
        // until it expires (6 s here), and repair says so meanwhile; then it runs.
        var repair = try runCommand(Repo.stowage, ["storage", "repair", "fleet-storage", "--config", lab.inventory])
        if repair.status == 11 {
            #expect(repair.stderr.contains("sw2: the repository is locked by") && repair.stderr.contains("backup fleet/r17"), "\(repair.stderr)")
            for _ in 0..<40 where repair.status == 11 {
                try await Task.sleep(for: .milliseconds(500))
                repair = try runCommand(Repo.stowage, ["storage", "repair", "fleet-storage", "--config", lab.inventory])
            }
        }
        #expect(repair.status == 0, "\(repair.stdout) \(repair.stderr)")
        let (whole, after) = try listed()
        #expect(whole == 0 && after?.replicas.sorted() == ["st1", "st2", "sw2"] && after?.health == "ok", "\(String(describing: after))")
        // And it restores.
        _ = try FleetLab.redis("fl17", ["FLUSHALL"])
        let restore = try runCommand(Repo.stowage, ["restore", "fleet/r17", "--backup", name, "--yes", "--config", lab.inventory])
        let keysBack = try FleetLab.redis("fl17", ["DBSIZE"])
        #expect(restore.status == 0 && keysBack.contains("300"), "\(restore.stderr)")
    }
}
