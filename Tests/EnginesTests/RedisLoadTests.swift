import Engines
import Testing

@Suite struct RedisLoadTests {
    let gib: Int64 = 1 << 30

    @Test func theSocketWhenTheNewDataFitsBesideTheOldWithAQuarterToSpare() {
        #expect(RedisLoad.choose(incoming: 4 * gib, used: 4 * gib, maxmemory: 0, available: 5 * gib) == .socket)
        // 4 GiB and its quarter are 5 GiB: one byte less available is too little.
        guard case .disk(let why) = RedisLoad.choose(incoming: 4 * gib, used: 4 * gib, maxmemory: 0, available: 5 * gib - 1) else {
            Issue.record("expected the disk")
            return
        }
        #expect(why == "the node has 5120 MiB available, the backup's data takes 4096 MiB beside the data held", "\(why)")
    }

    @Test func maxmemoryBoundsBothDatasetsTogether() {
        // The operator's limit holds both: the socket.
        #expect(RedisLoad.choose(incoming: gib, used: gib, maxmemory: 3 * gib, available: 100 * gib) == .socket)
        guard case .disk(let why) = RedisLoad.choose(incoming: gib, used: 2 * gib, maxmemory: 3 * gib, available: 100 * gib) else {
            Issue.record("expected the disk")
            return
        }
        #expect(why.contains("maxmemory (3072 MiB)") && why.contains("(2048 MiB)") && why.contains("(1024 MiB)"), "\(why)")
    }

    @Test func whatCannotBeKnownLoadsFromTheDisk() {
        #expect(
            RedisLoad.choose(incoming: nil, used: 0, maxmemory: 0, available: 100 * gib)
                == .disk(because: "the backup's RDB does not record the memory its data took (used-mem)"))
        #expect(RedisLoad.choose(incoming: gib, used: 0, maxmemory: 0, available: nil) == .disk(because: "the node's available memory could not be read"))
    }

    @Test func memAvailableOfProcMeminfo() {
        let meminfo = "MemTotal:       24683772 kB\nMemFree:         1234567 kB\nMemAvailable:   20000000 kB\nBuffers:          123 kB\n"
        #expect(NodeMemory.available(meminfo: meminfo) == Int64(20_480_000_000))
        #expect(NodeMemory.available(meminfo: "MemTotal: 1 kB\n") == nil)
    }

    @Test func cgroupHeadroomOnlyWithALimit() {
        #expect(NodeMemory.cgroupPath(procCgroup: "0::/system.slice/redis-server.service\n") == "/system.slice/redis-server.service")
        #expect(NodeMemory.cgroupPath(procCgroup: "12:memory:/docker/abc\n") == nil)
        #expect(NodeMemory.headroom(max: "max\n", current: "1000\n") == nil)
        #expect(NodeMemory.headroom(max: "1073741824\n", current: "73741824\n") == 1_000_000_000)
        // Over its limit already (reclaimable pages counted): no room, not a negative one.
        #expect(NodeMemory.headroom(max: "100\n", current: "150\n") == 0)
    }

    @Test func infoNumberReadsOneField() {
        let info = "# Memory\r\nused_memory:525483448\r\nused_memory_human:501.14M\r\nmaxmemory:0\r\n"
        #expect(RESP.infoNumber(info, "used_memory") == 525_483_448)
        #expect(RESP.infoNumber(info, "maxmemory") == 0)
        #expect(RESP.infoNumber(info, "used_memory_human") == nil)
        #expect(RESP.infoNumber(info, "used_memory_rss") == nil)
    }
}
