// The repository's secret keys and the key file that stores them wrapped by a key derived
// from the storage password (docs/storage-format.md, "Keys").
@preconcurrency import Crypto
import _CryptoExtras

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

package struct RepositoryKeys: Sendable, Equatable {
    package var data: SymmetricKey
    package var id: SymmetricKey
    package var chunkerSeed: [UInt8]

    package init(data: SymmetricKey, id: SymmetricKey, chunkerSeed: [UInt8]) {
        self.data = data
        self.id = id
        self.chunkerSeed = chunkerSeed
    }

    package static func generate() -> RepositoryKeys {
        RepositoryKeys(
            data: SymmetricKey(size: .bits256), id: SymmetricKey(size: .bits256),
            chunkerSeed: (0..<8).map { _ in UInt8.random(in: 0...255) })
    }

    /// A chunk's ID: hex of HMAC-SHA256(id key, plaintext).
    package func chunkID(_ plaintext: UnsafeRawBufferPointer) -> String {
        hexString(HMAC<SHA256>.authenticationCode(for: plaintext, using: id))
    }

    package static func == (a: RepositoryKeys, b: RepositoryKeys) -> Bool {
        a.data.withUnsafeBytes { Array($0) } == b.data.withUnsafeBytes { Array($0) }
            && a.id.withUnsafeBytes { Array($0) } == b.id.withUnsafeBytes { Array($0) }
            && a.chunkerSeed == b.chunkerSeed
    }
}

/// A key file: the keys, wrapped under scrypt(password).
package struct KeyFile: Codable, Sendable, Equatable {
    package var format: Int
    package var kdf: String
    package var n: Int
    package var r: Int
    package var p: Int
    package var salt: String
    package var wrapped: String

    static let aad = "stowage-keys"

    /// scrypt cost: N=32768, r=8 takes about 0.1 s and 32 MiB. Tests pass a smaller N.
    package static func create(keys: RepositoryKeys, password: String, n: Int = 32768) -> KeyFile {
        let salt = (0..<16).map { _ in UInt8.random(in: 0...255) }
        let kek = derive(password, salt: salt, n: n, r: 8, p: 1)
        struct Plain: Encodable { var data, id, chunkerSeed: String }
        let plain = Plain(data: b64(keys.data), id: b64(keys.id), chunkerSeed: Data(keys.chunkerSeed).base64EncodedString())
        let json = Array(try! JSONEncoder().encode(plain))
        let blob = Envelope.seal(json, key: kek, aad: aad, zstdLevel: nil)
        return KeyFile(
            format: 1, kdf: "scrypt", n: n, r: 8, p: 1, salt: Data(salt).base64EncodedString(),
            wrapped: Data(blob).base64EncodedString())
    }

    /// The keys, or `.wrongPassword` when the password does not open them.
    package func unlock(password: String) throws(RepositoryError) -> RepositoryKeys {
        guard format == 1, kdf == "scrypt" else { throw .malformedKeyFile("format \(format), kdf \(kdf)") }
        guard n >= 1024, n <= 1 << 22, n & (n - 1) == 0, (1...32).contains(r), (1...16).contains(p) else {
            throw .malformedKeyFile("scrypt parameters out of range")
        }
        guard let salt = Data(base64Encoded: salt), let blob = Data(base64Encoded: wrapped) else {
            throw .malformedKeyFile("salt or wrapped keys are not base64")
        }
        let kek = Self.derive(password, salt: Array(salt), n: n, r: r, p: p)
        let json: [UInt8]
        do { json = try Envelope.open(Array(blob), key: kek, aad: Self.aad) } catch .authenticationFailed {
            throw .wrongPassword
        }
        struct Plain: Decodable { var data, id, chunkerSeed: String }
        guard let plain = try? JSONDecoder().decode(Plain.self, from: Data(json)),
            let d = Data(base64Encoded: plain.data), d.count == 32,
            let i = Data(base64Encoded: plain.id), i.count == 32,
            let s = Data(base64Encoded: plain.chunkerSeed)
        else {
            throw .malformedKeyFile("the wrapped keys do not decode")
        }
        return RepositoryKeys(data: SymmetricKey(data: d), id: SymmetricKey(data: i), chunkerSeed: Array(s))
    }

    /// scrypt, the project's one call of it (key files here, dashboard passwords in Scheduling).
    package static func derive(_ password: String, salt: [UInt8], n: Int, r: Int, p: Int) -> SymmetricKey {
        // Parameters are validated by the callers; scrypt then only fails on allocation.
        try! KDF.Scrypt.deriveKey(
            from: Array(password.utf8), salt: salt, outputByteCount: 32,
            rounds: n, blockSize: r, parallelism: p)
    }

    static func b64(_ k: SymmetricKey) -> String { k.withUnsafeBytes { Data($0).base64EncodedString() } }
}

/// Lowercase hex of bytes (digests, IDs). Shared by the agent, which has no
/// Foundation `String(format:)`, and the coordinator.
package func hexString<S: Sequence>(_ bytes: S) -> String where S.Element == UInt8 {
    let d = Array("0123456789abcdef".utf8)
    var out = [UInt8]()
    for b in bytes { out.append(d[Int(b >> 4)]); out.append(d[Int(b & 15)]) }
    return String(decoding: out, as: UTF8.self)
}
