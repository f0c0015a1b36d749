// Signature Version 4 against AWS's published S3 examples (the "Signature Calculations"
// of the S3 API reference: example credentials, 2013-05-24T00:00:00Z, us-east-1, bucket
// examplebucket, virtual-host addressing).
@preconcurrency import Crypto
import Foundation
import Storage
import Testing

@Suite struct S3SigningTests {
    let credentials = S3Credentials(accessKey: "AKIAIOSFODNN7EXAMPLE", secretKey: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
    let date = Date(timeIntervalSince1970: 1_369_353_600)  // 2013-05-24T00:00:00Z
    let host = ("Host", "examplebucket.s3.amazonaws.com")

    func signature(_ r: S3Request) -> String {
        String(SigV4.authorization(r, credentials: credentials, date: date, region: "us-east-1").split(separator: "=").last ?? "")
    }

    @Test func getObject() {
        let r = S3Request(
            method: "GET", path: "/test.txt",
            headers: [host, ("Range", "bytes=0-9"), ("x-amz-content-sha256", SigV4.emptyHash), ("x-amz-date", "20130524T000000Z")],
            payloadHash: SigV4.emptyHash)
        #expect(SigV4.amzDate(date) == "20130524T000000Z")
        let (canonical, signed) = SigV4.canonical(r)
        #expect(signed == "host;range;x-amz-content-sha256;x-amz-date")
        let sts = SigV4.stringToSign(canonical, date: date, region: "us-east-1", service: "s3")
        #expect(sts.hasSuffix("\n20130524/us-east-1/s3/aws4_request\n7344ae5b7ee6c3e7e6b0fe0640412a37625d1fbfff95c48bbb2dc43964946972"), "\(canonical)")
        #expect(signature(r) == "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41")
        let header = SigV4.authorization(r, credentials: credentials, date: date, region: "us-east-1")
        #expect(header.hasPrefix("AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, SignedHeaders=host;range;"))
        #expect(!header.contains(credentials.secretKey))
    }

    @Test func putObject() {
        let body = Data("Welcome to Amazon S3.".utf8)
        let hash = SigV4.hex(SHA256.hash(data: body))
        #expect(hash == "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072")
        let r = S3Request(
            method: "PUT", path: "/" + SigV4.encode("test$file.text", keepSlash: true),
            headers: [
                host, ("Date", "Fri, 24 May 2013 00:00:00 GMT"), ("x-amz-date", "20130524T000000Z"), ("x-amz-storage-class", "REDUCED_REDUNDANCY"),
                ("x-amz-content-sha256", hash),
            ], payloadHash: hash)
        #expect(r.path == "/test%24file.text")
        #expect(signature(r) == "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd")
    }

    @Test func getBucketLifecycle() {
        let r = S3Request(
            method: "GET", path: "/", query: [("lifecycle", "")],
            headers: [host, ("x-amz-date", "20130524T000000Z"), ("x-amz-content-sha256", SigV4.emptyHash)], payloadHash: SigV4.emptyHash)
        #expect(signature(r) == "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543")
    }

    @Test func listObjects() {
        let r = S3Request(
            method: "GET", path: "/", query: [("prefix", "J"), ("max-keys", "2")],
            headers: [host, ("x-amz-date", "20130524T000000Z"), ("x-amz-content-sha256", SigV4.emptyHash)], payloadHash: SigV4.emptyHash)
        // The query is sorted by name whatever order it was given in.
        #expect(SigV4.canonical(r).request.contains("\nmax-keys=2&prefix=J\n"))
        #expect(signature(r) == "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7")
    }

    @Test func encodingKeepsOnlyUnreservedCharacters() {
        #expect(SigV4.encode("a b/c~d_e-f.g*h+%") == "a%20b%2Fc~d_e-f.g%2Ah%2B%25")
        #expect(SigV4.encode("env/data/ab/cd", keepSlash: true) == "env/data/ab/cd")
        #expect(SigV4.encode("é") == "%C3%A9")
    }
}
