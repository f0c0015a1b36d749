/// What can go wrong reading or writing repository objects. Messages name the object; the
/// caller adds node and path.
package enum RepositoryError: Error, Sendable, Equatable, CustomStringConvertible {
    /// Authentication of an envelope failed: wrong key (password), or the bytes were changed.
    case authenticationFailed(object: String)
    case truncated(object: String)
    case unsupportedVersion(object: String, version: Int)
    case decompression(object: String, reason: String)
    case wrongPassword
    case malformedKeyFile(String)

    package var description: String {
        switch self {
        case .authenticationFailed(let o): "\(o): authentication failed (corrupted, or written with another key)"
        case .truncated(let o): "\(o): truncated"
        case .unsupportedVersion(let o, let v): "\(o): envelope version \(v) is newer than this Stowage understands"
        case .decompression(let o, let r): "\(o): cannot decompress: \(r)"
        case .wrongPassword: "wrong password"
        case .malformedKeyFile(let why): "malformed key file: \(why)"
        }
    }
}
