// The only file that talks to libzstd.
import CZstd

enum Zstd {
    static func compress(_ input: UnsafeRawBufferPointer, level: Int32) -> [UInt8] {
        let bound = ZSTD_compressBound(input.count)
        var out = [UInt8](repeating: 0, count: bound)
        let n = out.withUnsafeMutableBytes { o in
            ZSTD_compress(o.baseAddress, bound, input.baseAddress, input.count, level)
        }
        // ZSTD_compress fails only for a too-small buffer, which compressBound rules out.
        precondition(ZSTD_isError(n) == 0, "zstd: \(String(cString: ZSTD_getErrorName(n)))")
        out.removeSubrange(n...)
        return out
    }

    /// Decompresses one frame; refuses a frame claiming more than `limit` bytes (a corrupt or
    /// hostile size must not make us allocate gigabytes).
    static func decompress(_ input: UnsafeRawBufferPointer, limit: Int, object: String) throws(RepositoryError) -> [UInt8] {
        let size = ZSTD_getFrameContentSize(input.baseAddress, input.count)
        // ZSTD_CONTENTSIZE_UNKNOWN / ERROR are the two largest UInt64 values.
        guard size < UInt64.max - 1 else { throw .decompression(object: object, reason: "not a zstd frame with a known size") }
        guard size <= UInt64(limit) else { throw .decompression(object: object, reason: "frame claims \(size) bytes, more than \(limit)") }
        var out = [UInt8](repeating: 0, count: Int(size))
        let n = out.withUnsafeMutableBytes { o in ZSTD_decompress(o.baseAddress, Int(size), input.baseAddress, input.count) }
        guard ZSTD_isError(n) == 0, n == Int(size) else {
            throw .decompression(object: object, reason: String(cString: ZSTD_getErrorName(n)))
        }
        return out
    }
}
