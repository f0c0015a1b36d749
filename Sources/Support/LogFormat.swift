// How the daemon's events are written (swift-log's handler): one line per event, as text
// for people or JSON for machines; a multi-line value (a failed run's stderr) stays inside
// its event. Under systemd (JOURNAL_STREAM set) the journal stamps each line itself, so the
// lines carry no time of their own.
import Foundation
import Logging

package enum LogFormat: String, Sendable, CaseIterable {
    case text, json
}

package struct StowageLogHandler: LogHandler {
    package var logLevel: Logger.Level
    package var metadata: Logger.Metadata = [:]
    let label: String
    let format: LogFormat
    let timestamps: Bool
    let write: @Sendable (String) -> Void

    package init(
        label: String, level: Logger.Level, format: LogFormat, timestamps: Bool,
        write: @escaping @Sendable (String) -> Void
    ) {
        self.label = label
        self.logLevel = level
        self.format = format
        self.timestamps = timestamps
        self.write = write
    }

    /// Without JOURNAL_STREAM: stamped lines on stdout. Under systemd: unstamped lines.
    package static func standard(
        label: String, level: Logger.Level, format: LogFormat,
        environment: [String: String] = ProcessInfo.processInfo.environment
    ) -> StowageLogHandler {
        StowageLogHandler(label: label, level: level, format: format, timestamps: environment["JOURNAL_STREAM"] == nil) { line in
            FileHandle.standardOutput.write(Data((line + "\n").utf8))
        }
    }

    package subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    package func log(event: LogEvent) {
        let merged = metadata.merging(event.metadata ?? [:]) { _, new in new }
        write(Self.line(level: event.level, message: "\(event.message)", metadata: merged, time: timestamps ? Date() : nil, format: format))
    }

    /// One event as one line (pure).
    package static func line(level: Logger.Level, message: String, metadata: Logger.Metadata, time: Date?, format: LogFormat) -> String {
        let stamp = time.map { UTCStamp.format($0) }
        switch format {
        case .text:
            var parts: [String] = []
            if let stamp { parts.append(stamp) }
            parts.append(level.rawValue)
            parts.append(oneLine(message))
            for (k, v) in metadata.sorted(by: { $0.key < $1.key }) { parts.append("\(k)=\(quoted("\(v)"))") }
            return parts.joined(separator: " ")
        case .json:
            var doc: [String: Any] = ["level": level.rawValue, "message": message]
            if let stamp { doc["time"] = stamp }
            for (k, v) in metadata where doc[k] == nil { doc[k] = json(v) }
            let data = (try? JSONSerialization.data(withJSONObject: doc, options: [.sortedKeys, .withoutEscapingSlashes])) ?? Data()
            return String(decoding: data, as: UTF8.self)
        }
    }

    static func json(_ v: Logger.Metadata.Value) -> Any {
        switch v {
        case .string(let s): return s
        case .stringConvertible(let c): return "\(c)"
        case .array(let a): return a.map(json)
        case .dictionary(let d): return d.mapValues(json)
        }
    }

    /// Line breaks escaped, so an event is one line whatever it says.
    static func oneLine(_ s: String) -> String {
        s.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\n", with: "\\n").replacingOccurrences(of: "\r", with: "\\r")
    }

    /// A metadata value as text: bare when it is one plain word, else quoted.
    static func quoted(_ s: String) -> String {
        let plain = !s.isEmpty && s.allSatisfy { !$0.isWhitespace && $0 != "\"" && $0 != "\\" && $0 != "=" }
        return plain ? s : "\"" + oneLine(s).replacingOccurrences(of: "\"", with: "\\\"") + "\""
    }
}
