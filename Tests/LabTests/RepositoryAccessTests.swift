// Opening repositories on the lab's replicated storage: created on first use, reopened with
// the storage password alone, wrong passwords and newer formats refused, one node down.
import Foundation
import Repository
import Support
import TestSupport
import Testing
import Topology

@testable import Fleet
@testable import Operations
@testable import Remote
@testable import Scheduling
@testable import Storage

private func labStorage(_ env: String) throws -> (ReplicatedStorage, StorageSpec) {
    let inv = try Inventory.load(path: Lab.inventory)
    let spec = try #require(inv.storage("lab-storage"))
    return (try ReplicatedStorage(spec, inventory: inv, agent: try AgentBinary.locate(), environment: env), spec)
}

private func cleanup(_ env: String) {
    for n in ["st1", "st2"] { try? FileManager.default.removeItem(atPath: "\(Lab.dir)/storage/\(n)/\(env)") }
}

extension LabSuites {
    @Suite struct RepositoryAccessSuite {
        let env = "repotest-\(UUID().uuidString.prefix(8))"

        init() async throws {
            try Lab.require()
            let inv = try Inventory.load(path: Lab.inventory)
            for n in ["st1", "st2"] { _ = try await AgentInstaller.install(try inv.agentNode(named: n), try AgentBinary.locate()) }
        }

        @Test func createdOnFirstUseAndReopenedWithThePasswordAlone() async throws {
            defer { cleanup(env) }
            let (s, spec) = try labStorage(env)
            let password = try spec.resolvePassword()
            let created = try await RepositoryAccess.open(s, environment: env, password: password, create: true, kdfCost: 1024)
            #expect(created.created)
            #expect(created.config.format == 1)
            for n in ["st1", "st2"] {
                let dir = "\(Lab.dir)/storage/\(n)/\(env)"
                #expect(FileManager.default.fileExists(atPath: "\(dir)/config"))
                #expect(try FileManager.default.contentsOfDirectory(atPath: "\(dir)/keys").count == 1)
            }
            // A fresh coordinator knows nothing but the nodes and the password.
            let reopened = try await RepositoryAccess.open(s, environment: env, password: password, create: false)
            #expect(!reopened.created)
            #expect(reopened.keys == created.keys)
            #expect(reopened.config == created.config)
            // The key file holds no key in clear.
            let keyDir = "\(Lab.dir)/storage/st1/\(env)/keys"
            let keyText = try String(contentsOfFile: "\(keyDir)/\(try FileManager.default.contentsOfDirectory(atPath: keyDir)[0])", encoding: .utf8)
            #expect(!keyText.contains(created.keys.data.withUnsafeBytes { Data($0).base64EncodedString() }))
        }

        @Test func wrongPasswordIsRefused() async throws {
            defer { cleanup(env) }
            let (s, spec) = try labStorage(env)
            _ = try await RepositoryAccess.open(s, environment: env, password: try spec.resolvePassword(), create: true, kdfCost: 1024)
            do throws(StowageError) {
                _ = try await RepositoryAccess.open(s, environment: env, password: Secret("not-it"), create: true)
                Issue.record("opened with a wrong password")
            } catch {
                #expect(error.status == .credentialsRejected)
                #expect(error.message == "wrong password for repository \(env) on storage lab-storage")
                #expect(!error.description.contains("not-it"))
            }
            // And a wrong password never creates a second repository over the first.
            #expect(try FileManager.default.contentsOfDirectory(atPath: "\(Lab.dir)/storage/st1/\(env)/keys").count == 1)
        }

        @Test func absentRepositoryWithoutCreate() async throws {
            let (s, spec) = try labStorage(env)
            do throws(StowageError) {
                _ = try await RepositoryAccess.open(s, environment: env, password: try spec.resolvePassword(), create: false)
                Issue.record("opened a repository that does not exist")
            } catch {
                #expect(error.message == "no repository \(env) on storage lab-storage")
            }
        }

        @Test func newerFormatIsRefusedAndNothingChanges() async throws {
            defer { cleanup(env) }
            let (s, spec) = try labStorage(env)
            _ = try await RepositoryAccess.open(s, environment: env, password: try spec.resolvePassword(), create: true, kdfCost: 1024)
            for n in ["st1", "st2"] {
                let path = "\(Lab.dir)/storage/\(n)/\(env)/config"
                let text = try String(contentsOfFile: path, encoding: .utf8).replacingOccurrences(of: "\"format\" : 1", with: "\"format\" : 2")
                try text.write(toFile: path, atomically: true, encoding: .utf8)
            }
            do throws(StowageError) {
                _ = try await RepositoryAccess.open(s, environment: env, password: try spec.resolvePassword(), create: true)
                Issue.record("opened a newer format")
            } catch {
                #expect(error.status == .repositoryDamaged)
                #expect(error.message.contains("has format 2, newer than this Stowage (1)"))
            }
        }

        @Test func opensFromTheOtherNodeWhenOneIsDown() async throws {
            defer { cleanup(env) }
            let (s, spec) = try labStorage(env)
            let created = try await RepositoryAccess.open(s, environment: env, password: try spec.resolvePassword(), create: true, kdfCost: 1024)
            let reopened = try await Lab.with("block", "st1") {
                try await RepositoryAccess.open(s, environment: env, password: try spec.resolvePassword(), create: false)
            }
            #expect(reopened.keys == created.keys)
        }
    }
}
