import CLoop
import Glibc
import Testing

@Suite("The loop: run, stop, backends, errors")
struct LoopTests {
  @Test func runReturnsAtOnceWhenNothingIsScheduled() throws {
    let loop = try makeLoop()
    #expect(cloop_run(loop) == 0)
    #expect(cloop_run_once(loop, -1) == 0)  // must not block forever
    #expect(cloop_loop_free(loop) == 0)
  }

  @Test func runReturnsWhenNothingIsLeft() throws {
    let loop = try makeLoop()
    let log = Log(loop: loop)
    let timer = Probe(2, log)
    let soon = Probe(1, log) { _ in
      // More work scheduled from a callback keeps run going.
      #expect(cloop_call_later(loop, timer.timer, 5_000_000) == 0)
    }
    cloop_call_soon(loop, soon.handle)
    #expect(cloop_run(loop) == 0)
    #expect(log.order == [1, 2])
    #expect(cloop_timer_count(loop) == 0)
    #expect(cloop_loop_free(loop) == 0)
  }

  @Test func stopFromACallbackEndsRunAfterTheBatch() throws {
    let loop = try makeLoop()
    let log = Log(loop: loop)
    let nextBatch = Probe(9, log)
    let sameBatch = Probe(2, log)
    var runs = 0
    let spinner = Probe(1, log) { probe in
      runs += 1
      if runs < 5 {
        cloop_call_soon(loop, probe.handle)
      } else {
        cloop_stop(loop)
        cloop_call_soon(loop, nextBatch.handle)
      }
    }
    cloop_call_soon(loop, spinner.handle)
    cloop_call_soon(loop, sameBatch.handle)

    #expect(cloop_run(loop) == 1)  // stopped
    #expect(log.order == [1, 2, 1, 1, 1, 1])
    #expect(cloop_handle_queued(nextBatch.handle) == 1)
    // The stop was consumed: the next run goes on until nothing is left.
    #expect(cloop_run(loop) == 0)
    #expect(log.order == [1, 2, 1, 1, 1, 1, 9])
    #expect(cloop_loop_free(loop) == 0)
  }

  @Test func refKeepsRunGoingUntilUnref() throws {
    let loop = try makeLoop()
    let log = Log(loop: loop)
    cloop_ref(loop)
    let release = Probe(2, log) { _ in cloop_unref(loop) }
    #expect(cloop_call_later(loop, release.timer, 10_000_000) == 0)
    let start = cloop_now(loop)
    #expect(cloop_run(loop) == 0)
    #expect(log.order == [2])
    #expect(cloop_now(loop) - start >= 10_000_000)
    #expect(cloop_loop_free(loop) == 0)
  }

  @Test(arguments: BackendUnderTest.allCases)
  func explicitBackendIsTheOneThatRuns(_ backend: BackendUnderTest) throws {
    let loop = try makeLoop(backend)
    #expect(cloop_loop_backend(loop) == backend.cValue)
    #expect(String(cString: cloop_backend_name(backend.cValue)) == (backend == .epoll ? "epoll" : "io_uring"))
    #expect(cloop_loop_free(loop) == 0)
  }

  @Test func autoPicksARealBackend() throws {
    let loop = try makeLoop()
    let backend = cloop_loop_backend(loop)
    #expect(backend == CLOOP_BACKEND_EPOLL || backend == CLOOP_BACKEND_URING)
    #expect(cloop_loop_free(loop) == 0)
  }

  @Test func strerrorNamesErrnoAndLibraryCodes() {
    #expect(message(-ENOENT) == String(cString: strerror(ENOENT)))
    #expect(message(-ECONNREFUSED) == String(cString: strerror(ECONNREFUSED)))
    let own = message(CLOOP_ENOBACKEND)
    #expect(!own.isEmpty)
    #expect(own != message(-ENOENT))
    #expect(CLOOP_ENOBACKEND < -4095)  // below the errno range
  }

  @Test func nowIsMonotonicAndCachedUntilUpdated() throws {
    let loop = try makeLoop()
    let first = cloop_now(loop)
    usleep(2_000)
    #expect(cloop_now(loop) == first)  // cached
    cloop_update_time(loop)
    #expect(cloop_now(loop) >= first + 2_000_000)
    #expect(cloop_loop_free(loop) == 0)
  }
}
