import CLoop
import Glibc
import Testing

@Suite("Timers: the 4-ary heap")
struct TimerTests {
  @Test func dueTimersFireInDeadlineOrderTiesInSchedulingOrder() throws {
    let loop = try makeLoop()
    let log = Log(loop: loop)
    let base = cloop_now(loop)
    // Deadlines already past, so one iteration moves them all, exactly.
    let offsets: [UInt64] = [5, 1, 3, 1, 5, 0, 3]
    let probes = offsets.indices.map { Probe($0, log) }
    for (probe, offset) in zip(probes, offsets) {
      #expect(cloop_call_at(loop, probe.timer, base - 10 + offset) == 0)
      #expect(probe.timer.pointee.deadline == base - 10 + offset)
    }
    #expect(cloop_timer_count(loop) == offsets.count)
    #expect(cloop_debug_verify_heap(loop) == 0)

    #expect(cloop_run_once(loop, 0) == 0)
    #expect(log.order == [5, 1, 3, 2, 6, 0, 4])
    #expect(cloop_timer_count(loop) == 0)
    #expect(probes.allSatisfy { cloop_timer_active($0.timer) == 0 })
    #expect(cloop_loop_free(loop) == 0)
  }

  @Test func callLaterWaitsForItsDelay() throws {
    let loop = try makeLoop()
    let log = Log(loop: loop)
    let delays: [Int64] = [30, 10, 20, 10].map { $0 * 1_000_000 }
    let probes = delays.indices.map { Probe($0, log) }
    let start = cloop_now(loop)
    for (probe, delay) in zip(probes, delays) {
      #expect(cloop_call_later(loop, probe.timer, delay) == 0)
      #expect(probe.timer.pointee.deadline == start + UInt64(delay))
    }
    #expect(cloop_run(loop) == 0)
    #expect(log.order == [1, 3, 2, 0])
    for (probe, delay) in zip(probes, delays) {
      #expect(probe.firedAt >= start + UInt64(delay), "timer \(probe.id) fired early")
    }
    #expect(cloop_now(loop) - start >= 30_000_000)
    #expect(cloop_now(loop) - start < 1_000_000_000)
    #expect(cloop_loop_free(loop) == 0)
  }

  @Test func negativeDelayActsAsZeroAndAHugeOneSaturates() throws {
    let loop = try makeLoop()
    let log = Log(loop: loop)
    let never = Probe(0, log)
    let soon = Probe(1, log)
    #expect(cloop_call_later(loop, never.timer, .max) == 0)
    #expect(never.timer.pointee.deadline >= cloop_now(loop))  // no wrap-around
    #expect(cloop_call_later(loop, soon.timer, -5_000_000_000) == 0)
    #expect(soon.timer.pointee.deadline == cloop_now(loop))
    #expect(cloop_run_once(loop, 0) == 1)  // the far timer remains
    #expect(log.order == [1])
    #expect(cloop_timer_cancel(loop, never.timer) == 1)
    #expect(cloop_loop_free(loop) == 0)
  }

  @Test func timerThatIsDueCanStillBeCancelled() throws {
    let loop = try makeLoop()
    let log = Log(loop: loop)
    let first = Probe(0, log)
    let second = Probe(1, log)
    // Both become due in the same iteration; the first cancels the second,
    // which by then sits on the ready ring rather than in the heap.
    first.action = { _ in #expect(cloop_timer_cancel(loop, second.timer) == 1) }
    let past = cloop_now(loop) - 1
    #expect(cloop_call_at(loop, first.timer, past) == 0)
    #expect(cloop_call_at(loop, second.timer, past) == 0)
    #expect(cloop_run(loop) == 0)
    #expect(log.order == [0])
    #expect(cloop_timer_active(second.timer) == 0)
    #expect(cloop_loop_free(loop) == 0)
  }

  /// 20,000 timers with many equal deadlines; 10,000 cancelled in random
  /// order, each leaving the heap at once and the heap valid; the rest then
  /// fire in (deadline, scheduling order), and no cancelled one fires.
  @Test func randomCancelsKeepTheHeapValid() throws {
    let loop = try makeLoop()
    let log = Log(loop: loop)
    var rng = SplitMix64(state: 0x7469_6e79_6173_796e)
    let total = 20_000
    let probes = (0..<total).map { Probe($0, log) }
    let base = cloop_now(loop)
    var deadlines: [UInt64] = []
    for probe in probes {
      // 0...40 ms in 2 ms steps: about 1,000 timers share each deadline.
      let delay = Int64(UInt64.random(in: 0...20, using: &rng)) * 2_000_000
      #expect(cloop_call_later(loop, probe.timer, delay) == 0)
      deadlines.append(base + UInt64(delay))
    }
    #expect(cloop_timer_count(loop) == total)
    #expect(cloop_debug_verify_heap(loop) == 0)

    let cancelled = Array(probes.shuffled(using: &rng).prefix(10_000))
    var count = cloop_timer_count(loop)
    var allAtOnce = true
    var heapValid = true
    for (i, probe) in cancelled.enumerated() {
      allAtOnce = allAtOnce && cloop_timer_cancel(loop, probe.timer) == 1
      allAtOnce = allAtOnce && cloop_timer_count(loop) == count - 1
      allAtOnce = allAtOnce && cloop_timer_active(probe.timer) == 0
      count -= 1
      if i % 500 == 499 { heapValid = heapValid && cloop_debug_verify_heap(loop) == 0 }
    }
    #expect(allAtOnce)
    #expect(heapValid)
    #expect(cloop_debug_verify_heap(loop) == 0)
    #expect(cloop_timer_count(loop) == total - 10_000)
    #expect(cloop_timer_cancel(loop, cancelled[0].timer) == 0)  // twice: no-op

    #expect(cloop_run(loop) == 0)
    let cancelledIDs = Set(cancelled.map(\.id))
    let expected = (0..<total).filter { !cancelledIDs.contains($0) }
      .sorted { (deadlines[$0], $0) < (deadlines[$1], $1) }
    #expect(log.order.count == expected.count)
    #expect(log.order == expected)
    #expect(cloop_timer_count(loop) == 0)
    #expect(cloop_loop_free(loop) == 0)
  }
}
