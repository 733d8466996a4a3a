import CLoop
import Glibc
import Testing

@Suite("Handles: call_soon and the ready ring")
struct HandleTests {
  @Test func callSoonRunsInFIFOOrder() throws {
    let loop = try makeLoop()
    let log = Log(loop: loop)
    let probes = (0..<100).map { Probe($0, log) }
    for probe in probes { cloop_call_soon(loop, probe.handle) }
    #expect(probes.allSatisfy { cloop_handle_queued($0.handle) == 1 })

    #expect(cloop_run_once(loop, 0) == 0)  // ran all; nothing left
    #expect(log.order == Array(0..<100))
    #expect(probes.allSatisfy { cloop_handle_queued($0.handle) == 0 })
    #expect(cloop_loop_free(loop) == 0)
  }

  @Test func handleQueuedFromACallbackRunsInTheNextIteration() throws {
    let loop = try makeLoop()
    let log = Log(loop: loop)
    let later = Probe(2, log)
    let first = Probe(1, log) { _ in cloop_call_soon(loop, later.handle) }
    // A handle that re-queues itself must not run twice in one iteration.
    var spins = 0
    let spinner = Probe(3, log) { probe in
      spins += 1
      if spins < 3 { cloop_call_soon(loop, probe.handle) }
    }
    cloop_call_soon(loop, first.handle)
    cloop_call_soon(loop, spinner.handle)

    #expect(cloop_run_once(loop, 0) == 1)
    #expect(log.order == [1, 3])
    #expect(cloop_handle_queued(later.handle) == 1)
    #expect(cloop_run_once(loop, 0) == 1)
    #expect(log.order == [1, 3, 2, 3])
    #expect(cloop_run_once(loop, 0) == 0)
    #expect(log.order == [1, 3, 2, 3, 3])
    #expect(cloop_loop_free(loop) == 0)
  }

  @Test func cancelTakesAHandleOffTheRing() throws {
    let loop = try makeLoop()
    let log = Log(loop: loop)
    let probes = (0..<3).map { Probe($0, log) }
    for probe in probes { cloop_call_soon(loop, probe.handle) }
    #expect(cloop_handle_cancel(loop, probes[1].handle) == 1)
    #expect(cloop_handle_cancel(loop, probes[1].handle) == 0)
    #expect(cloop_handle_queued(probes[1].handle) == 0)
    #expect(cloop_run(loop) == 0)
    #expect(log.order == [0, 2])
    // A cancelled handle can be queued again.
    cloop_call_soon(loop, probes[1].handle)
    #expect(cloop_run(loop) == 0)
    #expect(log.order == [0, 2, 1])
    #expect(cloop_loop_free(loop) == 0)
  }

  @Test func loopFreeRefusesWhileAHandleIsQueued() throws {
    let loop = try makeLoop()
    let probe = Probe(0, Log(loop: loop))
    cloop_call_soon(loop, probe.handle)
    #expect(cloop_loop_free(loop) == -EBUSY)
    #expect(cloop_handle_cancel(loop, probe.handle) == 1)
    #expect(cloop_loop_free(loop) == 0)
  }
}
