// The UTC stamp is what ISO8601DateFormatter writes, and reads back what it wrote.
import Foundation
import Testing

@testable import Support

@Suite struct UTCStampTests {
    @Test func itWritesWhatTheFormatterWritesAndReadsItBack() {
        let f = ISO8601DateFormatter()
        var x: UInt64 = 0x9E37_79B9_7F4A_7C15
        var samples: [Double] = [0, -1, 86_399, 86_400, 951_782_400 /* 2000-02-29 */, 4_107_542_399 /* 2100-02-28T23:59:59 */, -2_208_988_800]
        for _ in 0..<2000 {
            x ^= x << 13; x ^= x >> 7; x ^= x << 17
            samples.append(Double(x % 6_000_000_000) - 1_000_000_000 + 0.75)
        }
        for t in samples {
            let d = Date(timeIntervalSince1970: t)
            let ours = UTCStamp.format(d)
            #expect(ours == f.string(from: d), "\(t)")
            #expect(UTCStamp.parse(ours) == Date(timeIntervalSince1970: floor(t)), "\(ours)")
        }
        // Other forms still parse, through the formatter; nonsense does not.
        #expect(UTCStamp.parse("2026-12-07T06:30:02+01:00") == UTCStamp.parse("2026-12-07T05:30:02Z"))
        #expect(UTCStamp.parse("2026-13-07T05:30:02Z") == nil)
        #expect(UTCStamp.parse("yesterday") == nil)
    }
}
