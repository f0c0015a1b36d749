// Where each object of a repository lives, relative to the environment's folder on a
// storage node (docs/storage-format.md, "Layout"). Object names are built and parsed here
// and nowhere else.
//
//   config                     the repository's parameters (JSON)
//   keys/<id>                  key files: the keys, wrapped by the storage password
//   chunks/<2 hex>/<64 hex>    sealed chunks, named by their keyed ID
//   backups/<layer>/<name>     sealed manifests: a backup exists once its manifest does
//   locks/, tmp/               the agents' lock files and unfinished writes (never listed)
package enum RepositoryLayout {
    package static let config = "config"
    package static let keysPrefix = "keys"
    package static let chunksPrefix = "chunks"
    package static let backupsPrefix = "backups"

    package static func key(_ id: String) -> String { "\(keysPrefix)/\(id)" }
    package static func chunk(_ id: String) -> String { "\(chunksPrefix)/\(id.prefix(2))/\(id)" }
    package static func manifest(layer: String, name: BackupName) -> String { "\(backupsPrefix)/\(layer)/\(name)" }

    /// The chunk ID an object name holds, when it is a chunk's name.
    package static func chunkID(_ object: String) -> String? {
        let p = object.split(separator: "/", omittingEmptySubsequences: false)
        guard p.count == 3, p[0] == chunksPrefix, p[2].count == 64, p[2].hasPrefix(p[1]), p[1].count == 2,
            p[2].allSatisfy({ $0.isHexDigit && !$0.isUppercase })
        else { return nil }
        return String(p[2])
    }

    /// The layer and backup a manifest's object name stands for.
    package static func manifest(_ object: String) -> (layer: String, name: BackupName)? {
        let p = object.split(separator: "/", omittingEmptySubsequences: false)
        guard p.count == 3, p[0] == backupsPrefix, !p[1].isEmpty, let name = BackupName(String(p[2])) else { return nil }
        return (String(p[1]), name)
    }

    /// Whether the format defines a name like this one (anything else is foreign).
    package static func isKnown(_ object: String) -> Bool {
        let p = object.split(separator: "/", omittingEmptySubsequences: false)
        switch p.first {
        case config?: return p.count == 1
        case keysPrefix?: return p.count == 2 && !p[1].isEmpty
        case chunksPrefix?: return chunkID(object) != nil
        case backupsPrefix?: return manifest(object) != nil
        default: return false
        }
    }
}
