// AWS Signature Version 4 for S3-compatible stores (issue 18), as pure functions: the
// canonical request, the string to sign, the signing key and the Authorization header, built
// from what a request is and a clock reading passed in. Tested against AWS's published
// examples (OperationsTests/S3SigningTests). No secret is ever
// part of what these return except inside the HMAC.
@preconcurrency import Crypto
import Foundation
import Repository

/// An access key pair (from `access_key_file` or the environment; never the inventory).
package struct S3Credentials: Sendable, Equatable {
    package var accessKey: String
    package var secretKey: String

    package init(accessKey: String, secretKey: String) {
        self.accessKey = accessKey
        self.secretKey = secretKey
    }
}

/// One request to sign: method, the path as sent (already encoded), the query, the headers.
package struct S3Request: Sendable, Equatable {
    package var method: String
    /// The path as it goes on the wire: each segment encoded with `SigV4.encode`.
    package var path: String
    package var query: [(String, String)]
    package var headers: [(String, String)]
    /// Lowercase hex SHA-256 of the body, or `UNSIGNED-PAYLOAD`.
    package var payloadHash: String

    package init(method: String, path: String, query: [(String, String)] = [], headers: [(String, String)], payloadHash: String) {
        self.method = method
        self.path = path
        self.query = query
        self.headers = headers
        self.payloadHash = payloadHash
    }

    package static func == (a: S3Request, b: S3Request) -> Bool {
        a.method == b.method && a.path == b.path && a.query.elementsEqual(b.query, by: ==) && a.headers.elementsEqual(b.headers, by: ==)
            && a.payloadHash == b.payloadHash
    }
}

package enum SigV4 {
    /// SHA-256 of nothing: the payload hash of a request without a body.
    package static let emptyHash = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

    /// `yyyyMMdd'T'HHmmss'Z'` in UTC.
    package static func amzDate(_ d: Date) -> String {
        var c = Calendar(identifier: .gregorian)
        c.timeZone = TimeZone(identifier: "UTC")!
        let p = c.dateComponents([.year, .month, .day, .hour, .minute, .second], from: d)
        func two(_ n: Int?) -> String { let v = n ?? 0; return v < 10 ? "0\(v)" : "\(v)" }
        return "\(p.year ?? 1970)\(two(p.month))\(two(p.day))T\(two(p.hour))\(two(p.minute))\(two(p.second))Z"
    }

    /// RFC 3986 encoding as SigV4 wants it: unreserved characters kept, everything else as
    /// %XX (uppercase); `/` kept only when `keepSlash` (object keys in a path).
    package static func encode(_ s: String, keepSlash: Bool = false) -> String {
        var out = ""
        for b in s.utf8 {
            switch b {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
                UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "~"):
                out.unicodeScalars.append(Unicode.Scalar(b))
            case UInt8(ascii: "/") where keepSlash:
                out += "/"
            default:
                let hex = Array("0123456789ABCDEF")
                out += "%\(hex[Int(b >> 4)])\(hex[Int(b & 15)])"
            }
        }
        return out
    }

    package static func hex(_ d: some Sequence<UInt8>) -> String { hexString(d) }

    /// The canonical request and the signed headers' names.
    package static func canonical(_ r: S3Request) -> (request: String, signedHeaders: String) {
        let query = r.query.map { (encode($0.0), encode($0.1)) }.sorted { ($0.0, $0.1) < ($1.0, $1.1) }.map { "\($0.0)=\($0.1)" }.joined(separator: "&")
        // Header values trimmed, inner runs of spaces made one (the spec's rule).
        let headers = r.headers.map { (k, v) in
            (k.lowercased(), v.trimmingCharacters(in: .whitespaces).split(separator: " ", omittingEmptySubsequences: true).joined(separator: " "))
        }.sorted { $0.0 < $1.0 }
        let signed = headers.map(\.0).joined(separator: ";")
        let text = [
            r.method, r.path.isEmpty ? "/" : r.path, query, headers.map { "\($0.0):\($0.1)\n" }.joined(), signed, r.payloadHash,
        ].joined(separator: "\n")
        return (text, signed)
    }

    package static func stringToSign(_ canonicalRequest: String, date: Date, region: String, service: String) -> String {
        let stamp = amzDate(date)
        return [
            "AWS4-HMAC-SHA256", stamp, "\(stamp.prefix(8))/\(region)/\(service)/aws4_request",
            hex(SHA256.hash(data: Data(canonicalRequest.utf8))),
        ].joined(separator: "\n")
    }

    package static func signingKey(secret: String, date: Date, region: String, service: String) -> SymmetricKey {
        func mac(_ key: SymmetricKey, _ text: String) -> SymmetricKey {
            SymmetricKey(data: Data(HMAC<SHA256>.authenticationCode(for: Data(text.utf8), using: key)))
        }
        let day = String(amzDate(date).prefix(8))
        return mac(mac(mac(mac(SymmetricKey(data: Data("AWS4\(secret)".utf8)), day), region), service), "aws4_request")
    }

    /// The request's Authorization header value. The request must already carry `host`,
    /// `x-amz-date` (this `date`) and `x-amz-content-sha256` among its headers.
    package static func authorization(_ r: S3Request, credentials: S3Credentials, date: Date, region: String, service: String = "s3") -> String {
        let (request, signed) = canonical(r)
        let sts = stringToSign(request, date: date, region: region, service: service)
        let key = signingKey(secret: credentials.secretKey, date: date, region: region, service: service)
        let signature = hex(HMAC<SHA256>.authenticationCode(for: Data(sts.utf8), using: key))
        let scope = "\(amzDate(date).prefix(8))/\(region)/\(service)/aws4_request"
        return "AWS4-HMAC-SHA256 Credential=\(credentials.accessKey)/\(scope), SignedHeaders=\(signed), Signature=\(signature)"
    }
}
