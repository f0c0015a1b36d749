// Reading the passwords an inventory refers to. A password lives in memory as a `Secret`
// (which prints as "<redacted>"), goes to the database library in-process, and later to
// agents on their stdin only: never into argv, an environment variable of a child process,
// a log line or an error message.
import Foundation
import Support
import Topology

extension CredentialsSpec {
    /// The password, read now. `layer` names the layer in messages.
    package func resolvePassword(layer: String, environment: [String: String] = ProcessInfo.processInfo.environment) throws(StowageError) -> Secret? {
        switch password {
        case .none:
            return nil
        case .environment(let variable):
            guard let value = environment[variable], !value.isEmpty else {
                throw StowageError(
                    .invalidInventory,
                    "\(layer): environment variable \(variable) (\(field).password_env at \(location)) is not set",
                    hint: "export \(variable) before running stowage, or use password_file")
            }
            return Secret(value)
        case .credential(let name):
            guard let dir = environment["CREDENTIALS_DIRECTORY"], !dir.isEmpty else {
                throw StowageError(
                    .invalidInventory,
                    "\(layer): \(field).password_credential \(name) at \(location) needs $CREDENTIALS_DIRECTORY, which is not set",
                    hint: "run it under systemd with LoadCredential=\(name):/path/to/secret (contrib/systemd/stowage-scheduler.service), or use password_file")
            }
            return try CredentialsSpec(user: user, password: .file("\(dir)/\(name)"), location: location, field: field)
                .resolvePassword(layer: layer, environment: environment)
        case .file(let path):
            guard let data = FileManager.default.contents(atPath: path) else {
                let exists = FileManager.default.fileExists(atPath: path)
                throw StowageError(
                    .invalidInventory,
                    "\(layer): cannot read password file \(path) (\(field).password_file at \(location)): \(exists ? "permission denied" : "no such file")",
                    hint: exists ? "make it readable by the user running stowage (mode 600)" : "create it, holding the password on one line")
            }
            // One trailing newline is the file's, not the password's.
            var s = String(decoding: data, as: UTF8.self)
            if s.hasSuffix("\n") { s.removeLast() }
            if s.hasSuffix("\r") { s.removeLast() }
            guard !s.isEmpty else {
                throw StowageError(.invalidInventory, "\(layer): password file \(path) is empty", hint: "write the password into it")
            }
            return Secret(s)
        }
    }
}

extension StorageSpec {
    /// The storage password, read now.
    package func resolvePassword(environment: [String: String] = ProcessInfo.processInfo.environment) throws(StowageError) -> Secret {
        guard let password, let secret = try password.resolvePassword(layer: "storage \(name)", environment: environment) else {
            throw StowageError(
                .invalidInventory, "storage \(name) has no password",
                hint: "add password_env: VARIABLE or password_file: PATH to storages.\(name)")
        }
        return secret
    }
}
