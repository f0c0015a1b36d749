// Durations as operators write them: parsed and written back the same.
import Support
import Testing

@Suite struct DurationTests {
    @Test func operatorsSpellingsParseAndFormatBack() {
        for (text, seconds) in [("90s", 90.0), ("15m", 900), ("26h", 93600), ("2d", 172_800), ("1h30m", 5400), ("500ms", 0.5), ("45", 45)] {
            #expect(Durations.parse(text) == seconds, "\(text)")
        }
        for bad in ["", "-5m", "5x", "h", "1.2.3h", "5 m"] { #expect(Durations.parse(bad) == nil, "\(bad)") }
        for s in [60.0, 5400, 93600, 172_800, 90_061] { #expect(Durations.parse(Durations.format(s)) == s) }
        #expect(Durations.format(93600) == "1d2h")
    }
}
