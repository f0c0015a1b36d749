// Checks a command's JSON output against its schema in docs/json/, so a document and its
// published schema cannot drift apart unnoticed. A small JSON Schema (2020-12) subset: the
// keywords the schemas use. A schema using any other keyword is refused (`unsupported`),
// so nothing in a schema is silently left unchecked.
import Foundation

package enum JSONSchema {
    package static let keywords: Set<String> = [
        "$schema", "$id", "$defs", "$ref", "title", "description", "type", "properties", "required", "additionalProperties", "items", "enum", "const",
        "minimum", "pattern", "format",
    ]

    /// The schema docs/json/NAME.schema.json of this checkout.
    package static func load(_ name: String) throws -> [String: Any] {
        let data = try Data(contentsOf: URL(fileURLWithPath: Repo.path("docs/json/\(name).schema.json")))
        guard let schema = try JSONSerialization.jsonObject(with: data) as? [String: Any] else { throw Failure(["\(name): not a JSON object"]) }
        return schema
    }

    package struct Failure: Error, CustomStringConvertible {
        package var problems: [String]
        package init(_ problems: [String]) { self.problems = problems }
        package var description: String { problems.joined(separator: "\n") }
    }

    /// Every keyword the schema uses (at any depth) that this checker does not know.
    package static func unsupported(_ schema: Any, at path: String = "#") -> [String] {
        guard let s = schema as? [String: Any] else { return [] }
        var out = s.keys.filter { !keywords.contains($0) }.map { "\(path): \($0)" }
        for (k, v) in s {
            switch k {
            case "properties", "$defs":
                for (name, sub) in (v as? [String: Any]) ?? [:] { out += unsupported(sub, at: "\(path)/\(k)/\(name)") }
            case "items", "additionalProperties":
                out += unsupported(v, at: "\(path)/\(k)")
            default: break
            }
        }
        return out.sorted()
    }

    /// Problems of `text` (a whole document) against the schema NAME; empty when it conforms.
    package static func problems(_ text: String, schema name: String) throws -> [String] {
        let schema = try load(name)
        let bad = unsupported(schema)
        guard bad.isEmpty else { return bad.map { "schema uses an unsupported keyword: \($0)" } }
        let doc = try JSONDecoder().decode(Value.self, from: Data(text.utf8))
        var out: [String] = []
        check(doc, schema, root: schema, at: "$", into: &out)
        return out
    }

    /// Throws with every problem unless `text` conforms to the schema NAME.
    package static func validate(_ text: String, schema name: String) throws {
        let p = try problems(text, schema: name)
        if !p.isEmpty { throw Failure(["\(name).schema.json:"] + p) }
    }

    /// A JSON value as decoded, keeping booleans, integers and other numbers apart.
    enum Value: Decodable, Equatable, CustomStringConvertible {
        case null, bool(Bool), int(Int64), number(Double), string(String), array([Value]), object([String: Value])

        init(from decoder: Decoder) throws {
            let c = try decoder.singleValueContainer()
            if c.decodeNil() {
                self = .null
            } else if let b = try? c.decode(Bool.self) {
                self = .bool(b)
            } else if let i = try? c.decode(Int64.self) {
                self = .int(i)
            } else if let d = try? c.decode(Double.self) {
                self = .number(d)
            } else if let s = try? c.decode(String.self) {
                self = .string(s)
            } else if let a = try? c.decode([Value].self) {
                self = .array(a)
            } else {
                self = .object(try c.decode([String: Value].self))
            }
        }

        /// The same value from the schema's own JSON (JSONSerialization's objects; the
        /// schemas compare numbers and strings only).
        init(_ any: Any) {
            switch any {
            case let s as String: self = .string(s)
            case let n as NSNumber: self = n.doubleValue == n.doubleValue.rounded() ? .int(n.int64Value) : .number(n.doubleValue)
            case let a as [Any]: self = .array(a.map(Value.init))
            case let o as [String: Any]: self = .object(o.mapValues(Value.init))
            default: self = .null
            }
        }

        var typeName: String {
            switch self {
            case .null: "null"
            case .bool: "boolean"
            case .int: "integer"
            case .number: "number"
            case .string: "string"
            case .array: "array"
            case .object: "object"
            }
        }

        var description: String {
            switch self {
            case .null: "null"
            case .bool(let b): "\(b)"
            case .int(let i): "\(i)"
            case .number(let d): "\(d)"
            case .string(let s): "'\(s)'"
            case .array(let a): "[\(a.count) items]"
            case .object: "{...}"
            }
        }

        func matches(type: String) -> Bool { typeName == type || (type == "number" && typeName == "integer") }

        func sameAs(_ other: Value) -> Bool {
            switch (self, other) {
            case (.int(let a), .number(let b)), (.number(let b), .int(let a)): Double(a) == b
            default: self == other
            }
        }
    }

    static func check(_ v: Value, _ schemaAny: Any, root: [String: Any], at path: String, into out: inout [String]) {
        guard var s = schemaAny as? [String: Any] else { return }
        if let ref = s["$ref"] as? String {
            let name = ref.replacingOccurrences(of: "#/$defs/", with: "")
            guard let target = (root["$defs"] as? [String: Any])?[name] as? [String: Any] else {
                out.append("\(path): unresolved $ref \(ref)")
                return
            }
            s = target
        }
        if let t = s["type"] {
            let types = (t as? [String]) ?? [(t as? String) ?? ""]
            guard types.contains(where: { v.matches(type: $0) }) else {
                out.append("\(path): \(v.typeName), the schema says \(types.joined(separator: " or "))")
                return
            }
        }
        if let c = s["const"], !v.sameAs(Value(c)) { out.append("\(path): \(v), the schema says \(Value(c))") }
        if let e = s["enum"] as? [Any], !e.contains(where: { v.sameAs(Value($0)) }) { out.append("\(path): \(v) is not one of \(e)") }
        if let m = (s["minimum"] as? NSNumber)?.doubleValue {
            switch v {
            case .int(let i) where Double(i) < m: out.append("\(path): \(i) < \(m)")
            case .number(let d) where d < m: out.append("\(path): \(d) < \(m)")
            default: break
            }
        }
        if let p = s["pattern"] as? String, case .string(let str) = v, str.range(of: p, options: .regularExpression) == nil {
            out.append("\(path): '\(str)' does not match \(p)")
        }
        if case .object(let obj) = v {
            let props = (s["properties"] as? [String: Any]) ?? [:]
            for r in (s["required"] as? [String]) ?? [] where obj[r] == nil { out.append("\(path): \(r) is missing") }
            for (k, sub) in obj.sorted(by: { $0.key < $1.key }) {
                if let ps = props[k] {
                    check(sub, ps, root: root, at: "\(path).\(k)", into: &out)
                } else if let extra = s["additionalProperties"] {
                    if let allowed = extra as? Bool {
                        if !allowed { out.append("\(path): \(k) is not in the schema") }
                    } else {
                        check(sub, extra, root: root, at: "\(path).\(k)", into: &out)
                    }
                }
            }
        }
        if case .array(let arr) = v, let items = s["items"] {
            for (i, e) in arr.enumerated() { check(e, items, root: root, at: "\(path)[\(i)]", into: &out) }
        }
    }
}
