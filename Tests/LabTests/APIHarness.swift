// What the API's lab tests share: HTTP calls with a bearer token, a free port, tokens made
// with the CLI, and a scheduler started and waited for until it schedules.
import Foundation
import TestSupport
import Testing

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

struct APIAnswer {
    var status: Int
    var body: String
    var headers: [String: String] = [:]
    var json: Any? { try? JSONSerialization.jsonObject(with: Data(body.utf8)) }
    var object: [String: Any] { json as? [String: Any] ?? [:] }
}

/// Answers redirects as they come (a sign-in's 303 carries its cookie), and keeps no cookie:
/// each call says what it sends.
final class NoRedirect: NSObject, URLSessionTaskDelegate, Sendable {
    func urlSession(
        _ session: URLSession, task: URLSessionTask, willPerformHTTPRedirection response: HTTPURLResponse, newRequest request: URLRequest,
        completionHandler: @escaping @Sendable (URLRequest?) -> Void
    ) { completionHandler(nil) }
}

enum API {
    static let session: URLSession = {
        let c = URLSessionConfiguration.ephemeral
        c.httpShouldSetCookies = false
        c.httpCookieAcceptPolicy = .never
        return URLSession(configuration: c, delegate: NoRedirect(), delegateQueue: nil)
    }()

    static func call(
        _ method: String, _ url: String, token: String? = nil, rawAuthorization: String? = nil, body: Data? = nil, headers: [String: String] = [:],
        form: [String: String]? = nil
    ) async throws -> APIAnswer {
        var r = URLRequest(url: URL(string: url)!)
        r.httpMethod = method
        r.httpShouldHandleCookies = false
        if let token { r.setValue("Bearer \(token)", forHTTPHeaderField: "Authorization") }
        if let rawAuthorization { r.setValue(rawAuthorization, forHTTPHeaderField: "Authorization") }
        if let body {
            r.httpBody = body
            r.setValue("application/json", forHTTPHeaderField: "Content-Type")
        }
        if let form {
            var allowed = CharacterSet.alphanumerics
            allowed.insert(charactersIn: "-._~")
            r.httpBody = Data(
                form.map { "\($0.key)=\($0.value.addingPercentEncoding(withAllowedCharacters: allowed) ?? "")" }.joined(separator: "&").utf8)
            r.setValue("application/x-www-form-urlencoded", forHTTPHeaderField: "Content-Type")
        }
        for (k, v) in headers { r.setValue(v, forHTTPHeaderField: k) }
        let (data, response) = try await session.data(for: r)
        let http = response as? HTTPURLResponse
        var headers: [String: String] = [:]
        for (k, v) in http?.allHeaderFields ?? [:] { headers[String(describing: k).lowercased()] = String(describing: v) }
        return APIAnswer(status: http?.statusCode ?? 0, body: String(decoding: data, as: UTF8.self), headers: headers)
    }

    static func json(_ o: [String: Any]) -> Data { (try? JSONSerialization.data(withJSONObject: o)) ?? Data() }

    /// A port nothing listens on, from `range` (each test its own range: suites run in parallel).
    /// A port in `range` nothing listens on. Ranges stay below the kernel's ephemeral ports
    /// (32768 and up here): one chosen among them was once taken, between this check and
    /// the bind, by an outgoing connection's local port (a proxy's bind failed in CI).
    static func freePort(_ range: ClosedRange<Int>) -> Int {
        for _ in 0..<50 {
            let p = Int.random(in: range)
            if !WebhookReceiver.listening(p) { return p }
        }
        return range.upperBound
    }

    /// A token made with the CLI: its id and its secret (printed once).
    static func token(_ lab: FleetLab, _ args: [String]) throws -> (id: String, secret: String) {
        let r = try runCommand(Repo.stowage, ["token", "create", "--config", lab.inventory, "--json"] + args)
        #expect(r.status == 0, "\(r.stderr)")
        let o = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any]
        return ((o?["token"] as? [String: Any])?["id"] as? String ?? "", o?["secret"] as? String ?? "")
    }

    /// The lab's scheduler, once it has loaded its policies (its listener answers before).
    static func scheduler(_ lab: FleetLab) async throws -> BackgroundProcess {
        let daemon = try BackgroundProcess(
            Repo.stowage, ["scheduler", "--config", lab.inventory, "--log-format", "json"], output: "\(lab.dir)/scheduler.log")
        var scheduling = false
        for _ in 0..<600 {
            if daemon.output.contains(#""event":"scheduler-started""#) {
                scheduling = true
                break
            }
            try await Task.sleep(for: .milliseconds(100))
        }
        #expect(scheduling, "\(daemon.output)")
        return daemon
    }
}
