// A thin reader over Yams' node tree that remembers where each value came from, so that
// every inventory error names the file, line and column, and the key path.
import Support
import Topology
import Yams

struct YAMLValue {
    let node: Yams.Node
    let path: String
    let file: String

    var location: String {
        guard let m = node.mark else { return file }
        return "\(file):\(m.line):\(m.column)"
    }

    func error(_ message: String, hint: String? = nil) -> StowageError {
        StowageError(.invalidInventory, "\(location): \(message)", hint: hint)
    }

    var isNull: Bool {
        if case .scalar(let s) = node { return s.style == .plain && ["", "~", "null", "Null", "NULL"].contains(s.string) }
        return false
    }

    func string() throws(StowageError) -> String {
        guard case .scalar(let s) = node else { throw error("\(path) must be a single value, not a \(kindName)") }
        return s.string
    }

    func bool() throws(StowageError) -> Bool {
        switch try string().lowercased() {
        case "true", "yes", "on": return true
        case "false", "no", "off": return false
        default: throw error("\(path) must be true or false")
        }
    }

    func int() throws(StowageError) -> Int {
        guard let v = Int(try string()) else { throw error("\(path) must be a whole number") }
        return v
    }

    /// "3s", "500ms", "2m", "1h", "2d", "1h30m" or a bare number of seconds.
    func seconds() throws(StowageError) -> Double {
        let s = try string()
        guard let v = Durations.parse(s) else { throw error("\(path) must be a duration such as 3s, 500ms, 2m or 26h, not '\(s)'") }
        return v
    }

    var kindName: String {
        switch node {
        case .scalar: "value"
        case .mapping: "mapping"
        case .sequence: "list"
        case .alias: "alias"
        }
    }

    /// The entries of a mapping, in file order. Duplicate keys are an error: YAML says so,
    /// and a silent "last one wins" hides typos in an inventory.
    func mapping(allowed: [String]? = nil) throws(StowageError) -> [(key: String, value: YAMLValue)] {
        guard case .mapping(let m) = node else { throw error("\(path) must be a mapping (key: value), not a \(kindName)") }
        var seen: [String: Yams.Node] = [:]
        var out: [(String, YAMLValue)] = []
        for (k, v) in m {
            let key = k.string ?? ""
            let child = YAMLValue(node: v, path: path.isEmpty ? key : "\(path).\(key)", file: file)
            let keyValue = YAMLValue(node: k, path: child.path, file: file)
            if let first = seen[key] {
                throw keyValue.error("duplicate key '\(key)' in \(path.isEmpty ? "the top level" : path) (first at line \(first.mark?.line ?? 0))")
            }
            seen[key] = k
            if let allowed, !allowed.contains(key) {
                let close = allowed.filter { editDistance($0, key) <= 2 }.first
                throw keyValue.error(
                    "unknown key '\(key)' in \(path.isEmpty ? "the top level" : path)",
                    hint: close.map { "did you mean '\($0)'?" } ?? "known keys: \(allowed.joined(separator: ", "))")
            }
            out.append((key, child))
        }
        return out
    }

    func sequence() throws(StowageError) -> [YAMLValue] {
        guard case .sequence(let s) = node else { throw error("\(path) must be a list, not a \(kindName)") }
        return s.enumerated().map { YAMLValue(node: $1, path: "\(path)[\($0)]", file: file) }
    }

    /// A list of strings, or one string as a list of one.
    func stringList() throws(StowageError) -> [String] {
        if case .scalar = node { return [try string()] }
        var out: [String] = []
        for item in try sequence() { out.append(try item.string()) }
        return out
    }
}

/// A mapping's fields by name, with required/optional access.
struct YAMLFields {
    let owner: YAMLValue
    let fields: [String: YAMLValue]

    init(_ v: YAMLValue, allowed: [String]) throws(StowageError) {
        owner = v
        var f: [String: YAMLValue] = [:]
        for (k, val) in try v.mapping(allowed: allowed) { f[k] = val }
        fields = f
    }

    subscript(_ key: String) -> YAMLValue? {
        guard let v = fields[key], !v.isNull else { return nil }
        return v
    }

    func required(_ key: String, hint: String? = nil) throws(StowageError) -> YAMLValue {
        guard let v = self[key] else { throw owner.error("\(owner.path) has no '\(key)'", hint: hint) }
        return v
    }
}

extension YAMLFields {
    /// Where a password is: `password_env` or `password_file`, at most one of them. A plain
    /// `password` key (listed in `allowed` so it is recognised) is refused with a hint: the
    /// inventory and the policies file never hold a secret. `owner` names it in messages.
    func passwordSource(owner: String, file: String) throws(StowageError) -> CredentialsSpec.PasswordSource {
        if let p = fields["password"] {
            throw p.error(
                "plain-text passwords are not accepted in the \(file) (\(owner))",
                hint: "use password_env: VARIABLE or password_file: /path/readable/by/stowage/only")
        }
        var given: [CredentialsSpec.PasswordSource] = []
        if let e = try self["password_env"]?.string() { given.append(.environment(e)) }
        if let p = try self["password_file"]?.string() { given.append(.file(p)) }
        if let c = self["password_credential"] {
            let name = try c.string()
            guard !name.isEmpty, !name.contains("/") else {
                throw c.error("password_credential must be a credential's name (LoadCredential=NAME:...), not a path")
            }
            given.append(.credential(name))
        }
        guard given.count <= 1 else {
            throw self.owner.error("\(owner) gives more than one of password_env, password_file and password_credential", hint: "keep one")
        }
        return given.first ?? .none
    }
}

func editDistance(_ a: String, _ b: String) -> Int {
    let a = Array(a), b = Array(b)
    if a.isEmpty || b.isEmpty { return max(a.count, b.count) }
    var prev = Array(0...b.count)
    for i in 1...a.count {
        var cur = [i] + Array(repeating: 0, count: b.count)
        for j in 1...b.count {
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
        }
        prev = cur
    }
    return prev[b.count]
}
