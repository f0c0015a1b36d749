// Opening an environment's repository on a storage: read its config and key files from any
// node that has them, unlock the keys with the storage password, or create the repository
// on first use (docs/storage-format.md, "config", "Keys").
@preconcurrency import Crypto
import Fleet
import Foundation
import Remote
import Repository
import Support
import Topology

package struct RepositoryConfig: Codable, Sendable, Equatable {
    package struct ChunkerConfig: Codable, Sendable, Equatable {
        package var algorithm: String
        package var min: Int
        package var avg: Int
        package var max: Int
    }

    package var format: Int
    package var id: String
    package var created: String
    package var cipher: String
    package var compression: String
    package var chunkIDHash: String
    package var chunker: ChunkerConfig

    package static let currentFormat = 1

    static func fresh() -> RepositoryConfig {
        let p = ChunkerParameters.standard
        return RepositoryConfig(
            format: currentFormat, id: hexString((0..<16).map { _ in UInt8.random(in: 0...255) }),
            created: ISO8601DateFormatter().string(from: Date()), cipher: "aes-256-gcm", compression: "zstd",
            chunkIDHash: "hmac-sha256", chunker: .init(algorithm: "fastcdc", min: p.min, avg: p.avg, max: p.max))
    }
}

/// An unlocked repository: where it is and the keys to read and write it.
package struct OpenRepository: Sendable {
    package var storage: ReplicatedStorage
    package var environment: String
    package var config: RepositoryConfig
    package var keys: RepositoryKeys
    /// True when this call created it.
    package var created: Bool
    /// The storage password it was opened with (verify and repair unlock key files with it).
    package var password: Secret? = nil
}

package enum RepositoryAccess {
    /// Opens `environment`'s repository on the storage; creates it when absent and `create`.
    package static func open(
        _ storage: ReplicatedStorage, environment: String, password: Secret,
        create: Bool, kdfCost: Int = 32768
    ) async throws(StowageError) -> OpenRepository {
        let label = "repository \(environment) on storage \(storage.name)"
        let (found, reached) = try await find(storage, environment: environment, password: password)
        if let found { return found }
        guard create else {
            throw StowageError(.usage, "no \(label)", hint: "no backup of environment \(environment) has been written to this storage yet")
        }
        // Two coordinators (or two scheduled runs) creating one repository at once would each
        // write a key file of their own and encrypt with their own keys: the second config
        // wins and the first one's backups become unreadable. So a repository is created under
        // the exclusive repository lock of every reachable node, after looking again.
        let held = try await LayerLock.acquireAll(
            reached, layer: nil, operation: "create repository \(environment)", exclusive: true,
            patience: LayerLock.repositoryPatience)
        do throws(StowageError) {
            // Every node that answered a moment ago must be held, or a creator there could be missed.
            if let failure = held.failed.values.first { throw failure }
            let r: OpenRepository
            if let other = try await find(storage, environment: environment, password: password).found {
                r = other
            } else {
                r = try await createLocked(storage, environment: environment, password: password, kdfCost: kdfCost)
            }
            await held.release()
            return r
        } catch {
            await held.release()
            throw error
        }
    }

    /// The repository if a reached node holds its config; the nodes that answered.
    static func find(
        _ storage: ReplicatedStorage, environment: String, password: Secret
    ) async throws(StowageError) -> (found: OpenRepository?, reached: [any StorageDriver]) {
        let label = "repository \(environment) on storage \(storage.name)"
        var reachedNodes: [any StorageDriver] = []
        var reached = 0
        var lastError: StowageError?
        for node in storage.nodes {
            let found: (config: [UInt8]?, keys: [[UInt8]])
            do throws(StowageError) {
                let listing = try await node.list(prefix: RepositoryLayout.keysPrefix)
                let got = try await node.get([RepositoryLayout.config] + listing.map(\.name))
                reached += 1
                reachedNodes.append(node)
                found = (
                    got.objects.first { $0.name == RepositoryLayout.config }?.bytes, got.objects.filter { $0.name != RepositoryLayout.config }.map(\.bytes)
                )
            } catch {
                if error.isSetupFault { throw error }
                lastError = error
                continue
            }
            guard let configBytes = found.config else { continue }
            guard let config = try? JSONDecoder().decode(RepositoryConfig.self, from: Data(configBytes)) else {
                throw StowageError(
                    .repositoryDamaged, "\(label): \(node.name) holds an unreadable config",
                    hint: "stowage storage repair \(storage.name) copies it from another node")
            }
            guard config.format <= RepositoryConfig.currentFormat else {
                throw StowageError(
                    .repositoryDamaged, "\(label) has format \(config.format), newer than this Stowage (\(RepositoryConfig.currentFormat))",
                    hint: "use a newer stowage to read it; nothing was changed")
            }
            var sawKey = false
            for k in found.keys {
                guard let file = try? JSONDecoder().decode(KeyFile.self, from: Data(k)) else { continue }
                sawKey = true
                // A key file that does not open with this password is another's: try the next.
                if let keys = await unlock(file, password) {
                    return (
                        OpenRepository(
                            storage: storage, environment: environment, config: config, keys: keys, created: false,
                            password: password), reachedNodes
                    )
                }
            }
            if sawKey {
                throw StowageError(
                    .credentialsRejected, "wrong password for \(label)",
                    hint: "the storage password comes from storages.\(storage.name).password_env or password_file")
            }
            throw StowageError(
                .repositoryDamaged, "\(label): \(node.name) has a config but no readable key file",
                hint: "stowage storage repair \(storage.name) copies key files from another node")
        }
        if reached == 0, let lastError { throw lastError }
        return (nil, reachedNodes)
    }

    /// A key file's keys, or nil when the password does not open it. scrypt takes a good part
    /// of a second of CPU in BoringSSL: on a thread of its own, not the cooperative pool.
    package static func unlock(_ file: KeyFile, _ password: Secret) async -> RepositoryKeys? {
        let value = password.value
        return await DedicatedThread.run("scrypt") { try? file.unlock(password: value) }
    }

    static func createLocked(_ storage: ReplicatedStorage, environment: String, password: Secret, kdfCost: Int) async throws(StowageError) -> OpenRepository {
        // A new repository: key files first, config last (its presence marks a repository).
        let keys = RepositoryKeys.generate()
        let config = RepositoryConfig.fresh()
        let keyFile = await keyFile(keys, password: password, kdfCost: kdfCost)
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys, .prettyPrinted]
        let keyID = String(hexString(SHA256.hash(data: Array(keyFile.salt.utf8))).prefix(16))
        _ = try await storage.put([StoredObject(name: RepositoryLayout.key(keyID), bytes: Array(try! enc.encode(keyFile)))])
        _ = try await storage.put([StoredObject(name: RepositoryLayout.config, bytes: Array(try! enc.encode(config)))])
        return OpenRepository(storage: storage, environment: environment, config: config, keys: keys, created: true, password: password)
    }
}

extension RepositoryAccess {
    /// The environment's repository, or nil when the storage has none for it yet.
    package static func openIfPresent(_ storage: ReplicatedStorage, environment: String, password: Secret) async throws(StowageError) -> OpenRepository? {
        do throws(StowageError) {
            return try await open(storage, environment: environment, password: password, create: false)
        } catch {
            if error.status == .usage { return nil }
            throw error
        }
    }
}

extension RepositoryAccess {
    /// The repositories of `environments` on one storage, each opened in turn (environments
    /// with none yet are skipped) and handed to `body`: the opening sequence every
    /// storage-wide command shares (verify, repair, prune, the backup list, a password change).
    package static func forEach<T>(
        _ spec: StorageSpec, inventory: Inventory, agent: AgentBinary, environments: [String],
        password given: Secret? = nil,
        _ body: (OpenRepository) async throws(StowageError) -> T
    ) async throws(StowageError) -> [T] {
        let password: Secret
        if let given { password = given } else { password = try spec.resolvePassword() }
        var out: [T] = []
        for env in environments {
            let storage = try ReplicatedStorage(spec, inventory: inventory, agent: agent, environment: env)
            guard let repo = try await openIfPresent(storage, environment: env, password: password) else { continue }
            out.append(try await body(repo))
        }
        return out
    }

    /// A key file wrapping `keys` under `password` (scrypt, on a thread of its own).
    package static func keyFile(_ keys: RepositoryKeys, password: Secret, kdfCost: Int) async -> KeyFile {
        let value = password.value
        return await DedicatedThread.run("scrypt") { KeyFile.create(keys: keys, password: value, n: kdfCost) }
    }
}
