// The envelope every stored object is wrapped in (docs/storage-format.md, "Envelope"):
// version, compression, nonce, AES-256-GCM ciphertext and tag, with the object's name as
// additional authenticated data.
@preconcurrency import Crypto
import FoundationEssentials

package enum Envelope {
    package static let version: UInt8 = 1
    static let headerSize = 2 + 12
    static let tagSize = 16
    /// No chunk or manifest is larger than this once decompressed.
    package static let maxPlaintext = 64 << 20

    package enum Compression: UInt8, Sendable {
        case none = 0
        case zstd = 1
    }

    /// Compresses (when it helps) and encrypts `plaintext` for the object named `aad`.
    package static func seal(
        _ plaintext: UnsafeRawBufferPointer, key: SymmetricKey, aad: String,
        zstdLevel: Int32? = 3
    ) -> [UInt8] {
        var compression = Compression.none
        var body: [UInt8]
        if let level = zstdLevel {
            let z = Zstd.compress(plaintext, level: level)
            if z.count < plaintext.count { compression = .zstd; body = z } else { body = Array(plaintext) }
        } else {
            body = Array(plaintext)
        }
        let nonce = AES.GCM.Nonce()
        // Sealing with a valid 256-bit key and a fresh nonce cannot fail.
        let box = try! AES.GCM.seal(body, using: key, nonce: nonce, authenticating: Array(aad.utf8))
        var out: [UInt8] = [version, compression.rawValue]
        out.reserveCapacity(headerSize + body.count + tagSize)
        out += Array(nonce)
        out += box.ciphertext
        out += box.tag
        return out
    }

    package static func seal(_ plaintext: [UInt8], key: SymmetricKey, aad: String, zstdLevel: Int32? = 3) -> [UInt8] {
        plaintext.withUnsafeBytes { seal($0, key: key, aad: aad, zstdLevel: zstdLevel) }
    }

    /// Authenticates, decrypts and decompresses an envelope stored under the name `aad`.
    package static func open(_ blob: [UInt8], key: SymmetricKey, aad: String) throws(RepositoryError) -> [UInt8] {
        let (compression, plain) = try decrypt(blob, key: key, aad: aad)
        switch compression {
        case .none: return Array(plain)
        case .zstd:
            do {
                return try plain.withUnsafeBytes { try Zstd.decompress($0, limit: maxPlaintext, object: aad) }
            } catch let e as RepositoryError {
                throw e
            } catch {
                throw .decompression(object: aad, reason: "\(error)")
            }
        }
    }

    /// Whether the envelope is intact under the name `aad` (AES-GCM's tag checked), without
    /// decompressing it: what a coordinator that forwards sealed chunks to an agent checks,
    /// so a damaged copy is replaced by another node's; the agent, which decrypts anyway,
    /// checks the rest (the decompressed content against its keyed ID).
    package static func authenticate(_ blob: [UInt8], key: SymmetricKey, aad: String) throws(RepositoryError) {
        _ = try decrypt(blob, key: key, aad: aad)
    }

    /// The decrypted body as AES-GCM returns it: `open` decompresses from it and
    /// `authenticate` drops it, neither copying it into an array first (a coordinator
    /// authenticates every byte it forwards; that copy was as large as the data).
    private static func decrypt(_ blob: [UInt8], key: SymmetricKey, aad: String) throws(RepositoryError) -> (Compression, Data) {
        guard blob.count >= headerSize + tagSize else { throw .truncated(object: aad) }
        guard blob[0] == version else { throw .unsupportedVersion(object: aad, version: Int(blob[0])) }
        guard let compression = Compression(rawValue: blob[1]) else { throw .unsupportedVersion(object: aad, version: Int(blob[0])) }
        do {
            let box = try AES.GCM.SealedBox(
                nonce: try AES.GCM.Nonce(data: blob[2..<14]),
                ciphertext: blob[14..<(blob.count - tagSize)],
                tag: blob[(blob.count - tagSize)...])
            return (compression, try AES.GCM.open(box, using: key, authenticating: Array(aad.utf8)))
        } catch {
            throw .authenticationFailed(object: aad)
        }
    }
}
