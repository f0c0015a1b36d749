import Foundation
import Support

extension String {
    /// A C library's multi-line message on one line.
    func oneLine() -> String {
        split(whereSeparator: \.isNewline).map { $0.trimmingWhitespace() }.filter { !$0.isEmpty }.joined(separator: " ")
    }
}
