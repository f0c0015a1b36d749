// Who may do what over HTTP (docs/api.md): API tokens with a role, and the one decision every
// endpoint asks. Tokens are random (32 bytes), shown once, and stored only as their SHA-256:
// the catalog never holds what a request presents. A token's secret has 256 bits of
// entropy, so a fast hash is enough (a password would need a slow one).
@preconcurrency import Crypto
import Foundation
import Repository

package enum APIRole: String, Codable, Sendable, CaseIterable {
    /// Reads everything: fleet, layers, backups, runs.
    case viewer
    /// A viewer who also backs up and restores, in the environments it is scoped to.
    case `operator`
    /// Everything: configure, install and uninstall the add-on, storage maintenance, tokens.
    case admin
}

/// What an endpoint does, as authorization sees it.
package enum APIAction: String, Sendable, CaseIterable {
    case read
    case readAudit
    case backup
    case restore
    case configure
    case install
    case uninstall
    case maintainStorage
    case manageTokens

    package var mutates: Bool { self != .read && self != .readAudit }
}

/// The token a request authenticated with.
package struct APIPrincipal: Sendable, Equatable {
    package var tokenID: String
    package var name: String
    package var role: APIRole
    /// The environments an operator acts on; empty: all.
    package var environments: [String]

    package init(tokenID: String, name: String, role: APIRole, environments: [String] = []) {
        self.tokenID = tokenID
        self.name = name
        self.role = role
        self.environments = environments
    }
}

package enum APIDecision: Sendable, Equatable {
    case allowed
    /// 403, with why.
    case denied(String)
}

package enum APIAccess {
    /// The decision for `principal` doing `action` on `environment` (nil: not about one).
    package static func decide(_ principal: APIPrincipal, _ action: APIAction, environment: String?) -> APIDecision {
        switch (principal.role, action) {
        case (.admin, _):
            return .allowed
        case (_, .read):
            return .allowed
        case (.viewer, _):
            return .denied("token \(principal.tokenID) (\(principal.name)) is a viewer: it reads only")
        case (.operator, .readAudit):
            return .allowed
        case (.operator, .backup), (.operator, .restore):
            guard let environment else { return .denied("an operator acts on one environment at a time") }
            if principal.environments.isEmpty || principal.environments.contains(environment) { return .allowed }
            return .denied(
                "token \(principal.tokenID) (\(principal.name)) is an operator of \(principal.environments.joined(separator: ", ")), not of \(environment)")
        case (.operator, _):
            return .denied("\(action.rawValue) needs an admin token; token \(principal.tokenID) (\(principal.name)) is an operator")
        }
    }
}

/// A token as the catalog holds it: never its secret.
package struct APIToken: Codable, Sendable, Equatable {
    package var id: String
    package var name: String
    package var role: APIRole
    package var environments: [String]
    /// SHA-256 of the secret, hexadecimal.
    package var hash: String
    package var created: Date
    package var revoked: Date?

    package var principal: APIPrincipal { APIPrincipal(tokenID: id, name: name, role: role, environments: environments) }

    /// The secret's prefix: a leaked token is recognisable in a scanner's findings.
    package static let prefix = "stowage_"

    /// A new token and its secret (to be shown once).
    package static func generate(name: String, role: APIRole, environments: [String], now: Date = Date()) -> (APIToken, String) {
        var g = SystemRandomNumberGenerator()
        let secretBytes = (0..<32).map { _ in UInt8.random(in: 0...255, using: &g) }
        let idBytes = (0..<6).map { _ in UInt8.random(in: 0...255, using: &g) }
        let secret = prefix + Data(secretBytes).base64EncodedString().replacing("+", with: "-").replacing("/", with: "_").replacing("=", with: "")
        let id = hexString(idBytes)
        return (APIToken(id: id, name: name, role: role, environments: environments, hash: hash(secret), created: now, revoked: nil), secret)
    }

    package static func hash(_ secret: String) -> String {
        hexString(SHA256.hash(data: Data(secret.utf8)))
    }

    package init(id: String, name: String, role: APIRole, environments: [String], hash: String, created: Date, revoked: Date?) {
        self.id = id
        self.name = name
        self.role = role
        self.environments = environments
        self.hash = hash
        self.created = created
        self.revoked = revoked
    }
}

/// One mutating call, as the audit trail keeps it.
package struct AuditRecord: Codable, Sendable, Equatable {
    package var id: Int64?
    package var at: Date
    /// The token's id and name; "-" when the request had none that authenticated.
    package var tokenID: String
    package var tokenName: String
    package var method: String
    package var path: String
    package var action: String
    package var target: String?
    /// The HTTP status answered.
    package var status: Int
    package var outcome: String
    package var detail: String?

    package init(
        at: Date, tokenID: String, tokenName: String, method: String, path: String, action: String, target: String?, status: Int, outcome: String,
        detail: String?
    ) {
        self.at = at
        self.tokenID = tokenID
        self.tokenName = tokenName
        self.method = method
        self.path = path
        self.action = action
        self.target = target
        self.status = status
        self.outcome = outcome
        self.detail = detail
    }
}
