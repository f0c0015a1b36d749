@preconcurrency import Crypto
import Testing

@testable import Repository

@Suite struct EnvelopeTests {
    let key = SymmetricKey(size: .bits256)

    @Test func roundTripCompressesWhenItHelps() throws {
        let text = dumpLike(20_000, seed: 1)
        let sealed = Envelope.seal(text, key: key, aad: "chunk-a")
        #expect(sealed[0] == 1)
        #expect(sealed[1] == Envelope.Compression.zstd.rawValue)
        #expect(sealed.count < text.count / 3)
        #expect(try Envelope.open(sealed, key: key, aad: "chunk-a") == text)

        let noise = pseudoRandom(100_000, seed: 5)
        let sealedNoise = Envelope.seal(noise, key: key, aad: "chunk-b")
        #expect(sealedNoise[1] == Envelope.Compression.none.rawValue)
        #expect(try Envelope.open(sealedNoise, key: key, aad: "chunk-b") == noise)
    }

    @Test func anyChangedByteIsDetected() {
        let sealed = Envelope.seal(dumpLike(1000, seed: 2), key: key, aad: "x")
        for i in [2, 13, 14, sealed.count / 2, sealed.count - 1] {
            var bad = sealed
            bad[i] ^= 0x40
            #expect(throws: RepositoryError.authenticationFailed(object: "x")) { try Envelope.open(bad, key: key, aad: "x") }
        }
    }

    @Test func authenticatingAloneRefusesWhatOpeningRefuses() throws {
        let sealed = Envelope.seal(dumpLike(5000, seed: 3), key: key, aad: "chunks/ab/abcd")
        try Envelope.authenticate(sealed, key: key, aad: "chunks/ab/abcd")
        var bad = sealed
        bad[sealed.count / 2] ^= 0x01
        #expect(throws: RepositoryError.authenticationFailed(object: "chunks/ab/abcd")) { try Envelope.authenticate(bad, key: key, aad: "chunks/ab/abcd") }
        // A good envelope of another chunk stored under this name.
        #expect(throws: RepositoryError.authenticationFailed(object: "chunks/ab/abce")) { try Envelope.authenticate(sealed, key: key, aad: "chunks/ab/abce") }
        #expect(throws: RepositoryError.truncated(object: "x")) { try Envelope.authenticate(Array(sealed.prefix(20)), key: key, aad: "x") }
    }

    @Test func aRenamedOrForeignObjectIsRefused() {
        let sealed = Envelope.seal([1, 2, 3], key: key, aad: "backups/sqldb/2026-11-21T030000Z-auto")
        #expect(throws: RepositoryError.authenticationFailed(object: "backups/sqldb/2026-11-22T030000Z-auto")) {
            try Envelope.open(sealed, key: key, aad: "backups/sqldb/2026-11-22T030000Z-auto")
        }
        #expect(throws: RepositoryError.authenticationFailed(object: "backups/sqldb/2026-11-21T030000Z-auto")) {
            try Envelope.open(sealed, key: SymmetricKey(size: .bits256), aad: "backups/sqldb/2026-11-21T030000Z-auto")
        }
    }

    @Test func truncatedAndNewerEnvelopes() {
        let sealed = Envelope.seal([1, 2, 3], key: key, aad: "x")
        #expect(throws: RepositoryError.truncated(object: "x")) { try Envelope.open(Array(sealed.prefix(20)), key: key, aad: "x") }
        var newer = sealed
        newer[0] = 2
        #expect(throws: RepositoryError.unsupportedVersion(object: "x", version: 2)) { try Envelope.open(newer, key: key, aad: "x") }
    }
}

@Suite struct KeyFileTests {
    @Test func passwordUnlocksAndWrongPasswordIsRefused() throws {
        let keys = RepositoryKeys.generate()
        // A small scrypt cost keeps the test fast; the default is 32768.
        let file = KeyFile.create(keys: keys, password: "correct horse", n: 1024)
        #expect(try file.unlock(password: "correct horse") == keys)
        #expect(throws: RepositoryError.wrongPassword) { try file.unlock(password: "Correct horse") }
        // The file itself never holds the keys in clear.
        let text = "\(file)"
        #expect(!text.contains(keys.data.withUnsafeBytes { Array($0) }.map { String($0) }.joined()))
    }

    @Test func changingThePasswordKeepsTheKeys() throws {
        let keys = RepositoryKeys.generate()
        let old = KeyFile.create(keys: keys, password: "old", n: 1024)
        let new = KeyFile.create(keys: try old.unlock(password: "old"), password: "new", n: 1024)
        #expect(new.salt != old.salt)
        #expect(try new.unlock(password: "new") == keys)
        #expect(throws: RepositoryError.wrongPassword) { try new.unlock(password: "old") }
    }

    @Test func tamperedParametersAreRefused() {
        var file = KeyFile.create(keys: .generate(), password: "p", n: 1024)
        file.n = 1000
        #expect(throws: RepositoryError.self) { try file.unlock(password: "p") }
    }

    @Test func chunkIDsAreKeyedHashes() {
        let a = RepositoryKeys.generate(), b = RepositoryKeys.generate()
        let data: [UInt8] = Array("same content".utf8)
        let idA = data.withUnsafeBytes { a.chunkID($0) }
        #expect(idA.count == 64)
        #expect(idA == data.withUnsafeBytes { a.chunkID($0) })
        #expect(idA != data.withUnsafeBytes { b.chunkID($0) })
    }
}
