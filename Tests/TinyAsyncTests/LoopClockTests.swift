import Testing
@testable import TinyAsync

/// Sleeps twice on any clock, once by duration and once to a deadline, and
/// says how long that took on the clock and whether it woke where it began.
/// Generic over `Clock`, as swift-async-algorithms' timers are: nothing in
/// it knows of the loop.
private func sleepTwice<C: Clock>(on clock: C, _ step: C.Duration, check: () -> Bool) async throws -> (C.Duration, Bool) {
  let start = clock.now
  try await clock.sleep(for: step)
  let first = check()
  try await clock.sleep(until: clock.now.advanced(by: step), tolerance: nil)
  return (start.duration(to: clock.now), first && check())
}

/// A cancellation, whichever error type carries it.
private func isCancellation(_ error: any Error) -> Bool {
  error is CancellationError || (error as? TinyAsyncError) == .cancelled
}

@Suite("LoopClock: the loop's time as a Swift Clock")
struct LoopClockTests {
  final class Log { var entries: [String] = [] }

  @Test(arguments: [EventLoop.Backend.epoll, .ioUring])
  func taskSleepOnTheLoopClockWakesOnTheLoopInOrderWithItsTimers(_ backend: EventLoop.Backend) throws {
    let loop = try makeLoop(backend, clock: .manual)
    let log = LoopThreadBox(Log())
    let hops = loop.jobsFromOtherThreads
    try loop.runUntilComplete {
      let start = loop.now
      loop.callLater(.milliseconds(3)) { log.value.entries.append("timer 3 ms") }
      loop.callLater(.milliseconds(7)) { log.value.entries.append("timer 7 ms") }
      // Same deadline, scheduled before the sleep: it fires first.
      loop.callLater(.milliseconds(5)) { log.value.entries.append("timer 5 ms") }
      try await Task.sleep(for: .milliseconds(5), clock: loop.clock)
      log.value.entries.append("slept \(loop.now - start) on the loop: \(loop.isOnLoopThread)")
    }
    try loop.runUntilIdle()  // the 7 ms timer
    #expect(log.value.entries == ["timer 3 ms", "timer 5 ms", "slept 0.005 seconds on the loop: true", "timer 7 ms"])
    // No job came back from another thread: no Dispatch timer took part.
    #expect(loop.jobsFromOtherThreads == hops)
  }

  @Test func clockGenericCodeRunsOnTheLoopsHeap() throws {
    let loop = try makeLoop(.automatic, clock: .manual)
    let outcome = try loop.runUntilComplete {
      let clock = loop.clock
      let before = loop.pendingTimerCount
      async let timers = { () async throws -> Int in
        try await sleep(for: .milliseconds(1))
        return loop.pendingTimerCount  // the helper's sleep is on the heap
      }()
      let (elapsed, onLoop) = try await sleepTwice(on: clock, .milliseconds(4)) { loop.isOnLoopThread }
      return (elapsed, onLoop, try await timers - before)
    }
    #expect(outcome.0 == .milliseconds(8))  // exact: the manual clock
    #expect(outcome.1)
    #expect(outcome.2 == 1)
  }

  @Test func cancellationEndsTheSleep() throws {
    let loop = try makeLoop(.automatic, clock: .manual)
    let outcome = try loop.runUntilComplete {
      let start = loop.now
      let sleeper = loop.spawn {
        try await Task.sleep(for: .seconds(1000), clock: loop.clock)
      }
      loop.callLater(.milliseconds(2)) { sleeper.cancel() }
      do {
        try await sleeper.value
        return ("slept on", loop.now - start)
      } catch {
        return (isCancellation(error) ? "cancelled" : "\(error)", loop.now - start)
      }
    }
    #expect(outcome.0 == "cancelled")
    #expect(outcome.1 == .milliseconds(2))
  }

  @Test func anEnclosingTimeoutEndsTheSleep() throws {
    let loop = try makeLoop(.automatic, clock: .manual)
    let outcome = try loop.runUntilComplete {
      let start = loop.now
      do {
        try await withTimeout(.milliseconds(3)) {
          try await loop.clock.sleep(until: loop.clock.now.advanced(by: .seconds(1000)))
        }
        return ("slept on", loop.now - start)
      } catch TinyAsyncError.timedOut {
        return ("timed out", loop.now - start)
      }
    }
    #expect(outcome.0 == "timed out")
    #expect(outcome.1 == .milliseconds(3))
  }

  /// A deadline that has passed yields once, as `sleep(for: .zero)` does:
  /// what was queued before it runs first.
  @Test func aPastDeadlineYieldsToTheLoopOnce() throws {
    let loop = try makeLoop(.automatic, clock: .manual)
    let log = LoopThreadBox(Log())
    try loop.runUntilComplete {
      let start = loop.clock.now
      loop.callSoon { log.value.entries.append("queued before") }
      try await loop.clock.sleep(until: start.advanced(by: .milliseconds(-1)))
      log.value.entries.append("woke after \(start.duration(to: loop.clock.now))")
    }
    #expect(log.value.entries == ["queued before", "woke after 0.0 seconds"])
  }

  @Test func instantsAreTheLoopsNow() throws {
    let loop = try makeLoop(.automatic, clock: .manual)
    let now = loop.clock.now
    #expect(now.offset == loop.now)
    #expect(now.offset == manualClockStart)
    let later = now.advanced(by: .milliseconds(5))
    #expect(now < later && now.duration(to: later) == .milliseconds(5))
    #expect(later.duration(to: now) == .milliseconds(-5))
    #expect(loop.clock.minimumResolution == .nanoseconds(1))
    loop.advanceClock(by: .seconds(2))
    #expect(now.duration(to: loop.clock.now) == .seconds(2))
  }

  @Test func sleepingOffTheLoopStops() async {
    let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
      let loop = try EventLoop()
      let clock = loop.clock
      let deadline = LoopClock.Instant(offset: .seconds(1))  // not `clock.now`: that stops first
      try await Task.detached { try await clock.sleep(until: deadline) }.value
    }
    let text = String(decoding: result?.standardErrorContent ?? [], as: UTF8.self)
    #expect(text.contains("LoopClock.sleep(until:tolerance:): called off its EventLoop"))
  }

  @Test func readingTheClockOffTheLoopsThreadStops() async {
    let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
      let loop = try EventLoop()
      let clock = loop.clock
      // A thread of its own: a detached task may run on the very
      // cooperative thread that made the loop.
      joinThread(startThread { _ = clock.now })
    }
    let text = String(decoding: result?.standardErrorContent ?? [], as: UTF8.self)
    #expect(text.contains("LoopClock.now: read off its EventLoop's thread"))
  }
}
