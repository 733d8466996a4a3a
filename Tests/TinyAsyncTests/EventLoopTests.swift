import Testing
@testable import TinyAsync

@Suite("EventLoop: callSoon, callLater, run")
struct EventLoopTests {
  @Test(arguments: [EventLoop.Backend.epoll, .ioUring])
  func backendInfoNamesTheBackendAndItsTier(_ backend: EventLoop.Backend) throws {
    let loop = try makeLoop(backend)
    if backend == .epoll {
      #expect(loop.backendInfo == "epoll")
    } else {
      #expect(loop.backendInfo.hasPrefix("io_uring ("))
      #expect(loop.backendInfo.contains("TASKRUN"))
    }
  }

  @Test func callSoonRunsInOrderAndNestedCallsWaitAnIteration() throws {
    let loop = try EventLoop()
    var log: [String] = []
    for i in 0..<5 { loop.callSoon { log.append("soon \(i)") } }
    loop.callSoon {
      log.append("outer")
      loop.callSoon { log.append("inner") }
    }
    #expect(try loop.runOnce(timeout: .zero) == true)  // "inner" remains
    #expect(log == ["soon 0", "soon 1", "soon 2", "soon 3", "soon 4", "outer"])
    #expect(try loop.runOnce(timeout: .zero) == false)
    #expect(log.last == "inner")
    #expect(log.count == 7)
  }

  @Test func callLaterFiresInDeadlineOrderAfterItsDelay() throws {
    let loop = try makeLoop(.automatic, clock: .manual)
    let start = loop.now
    var fired: [(Int, Duration)] = []
    for (id, ms) in [(0, 30), (1, 10), (2, 20), (3, 10)] {
      loop.callLater(.milliseconds(ms)) { fired.append((id, loop.now - start)) }
    }
    #expect(loop.pendingTimerCount == 4)
    try loop.runUntilIdle()
    #expect(fired.map(\.0) == [1, 3, 2, 0])
    #expect(fired.allSatisfy { id, elapsed in  // each exactly at its deadline
      elapsed == .milliseconds([30, 10, 20, 10][id])
    })
    #expect(loop.now - start == .milliseconds(30))
    #expect(loop.pendingTimerCount == 0)
  }

  @Test func cancelledTimerNeverRunsAndIsReleased() throws {
    let loop = try makeLoop(.automatic, clock: .manual)
    weak var weakToken: Token?
    var ran: [String] = []
    let handle: TimerHandle
    do {
      let token = Token()
      weakToken = token
      handle = loop.callLater(.milliseconds(5)) { _ = token; ran.append("cancelled") }
    }
    loop.callLater(.milliseconds(10)) { ran.append("kept") }
    #expect(weakToken != nil)  // held by the scheduled closure
    #expect(handle.isPending)
    #expect(loop.pendingTimerCount == 2)

    #expect(handle.cancel() == true)
    #expect(weakToken == nil)  // released at once, though `handle` lives on
    #expect(!handle.isPending)
    #expect(loop.pendingTimerCount == 1)
    #expect(handle.cancel() == false)

    try loop.runUntilIdle()
    #expect(ran == ["kept"])
  }

  @Test func closuresAreReleasedAfterTheyRun() throws {
    let loop = try makeLoop(.automatic, clock: .manual)
    weak var soonToken: Token?
    weak var timerToken: Token?
    var runs = 0
    let timer: TimerHandle
    do {
      let a = Token(), b = Token()
      soonToken = a
      timerToken = b
      loop.callSoon { _ = a; runs += 1 }
      timer = loop.callLater(.milliseconds(1)) { _ = b; runs += 1 }
    }
    try loop.runUntilIdle()
    #expect(runs == 2)
    #expect(soonToken == nil)
    #expect(timerToken == nil)
    #expect(timer.cancel() == false)  // already ran
  }

  @Test func droppingTheLoopReleasesUnrunClosuresWithoutRunningThem() throws {
    weak var weakLoop: EventLoop?
    weak var soonToken: Token?
    weak var timerToken: Token?
    var ran = false
    var timer: TimerHandle?
    do {
      let loop = try EventLoop()
      weakLoop = loop
      let a = Token(), b = Token()
      soonToken = a
      timerToken = b
      loop.callSoon { _ = a; ran = true }
      timer = loop.callLater(.seconds(60)) { _ = b; ran = true }
      // A closure that captures its loop weakly does not keep it alive.
      loop.callSoon { [weak loop] in _ = loop; ran = true }
    }
    #expect(weakLoop == nil)
    #expect(soonToken == nil)
    #expect(timerToken == nil)
    #expect(!ran)
    #expect(timer?.isPending == false)
    #expect(timer?.cancel() == false)  // after the loop is gone: allowed, a no-op
  }

  @Test func stopEndsRunAfterTheBatchAndKeepsTheRest() throws {
    let loop = try EventLoop()
    var log: [String] = []
    var ticks = 0
    func tick() {
      ticks += 1
      log.append("tick \(ticks)")
      if ticks == 3 { loop.stop() }
      if ticks < 4 { loop.callSoon(tick) }
    }
    loop.callSoon(tick)
    loop.callSoon { log.append("same batch") }
    try loop.runUntilIdle()
    #expect(log == ["tick 1", "same batch", "tick 2", "tick 3"])
    // The re-queued tick is still there: the next iteration runs it.
    #expect(try loop.runOnce(timeout: .zero) == false)
    #expect(log.last == "tick 4")
    #expect(ticks == 4)
  }

  @Test func runOnceWithATimeoutWaitsForTheNextTimer() throws {
    let loop = try makeLoop(.automatic, clock: .manual)
    var fired = false
    loop.callLater(.milliseconds(20)) { fired = true }
    let start = loop.now
    #expect(try loop.runOnce(timeout: .milliseconds(1)) == true)
    #expect(!fired)
    #expect(loop.now - start == .milliseconds(1))  // it waited its timeout
    #expect(try loop.runOnce() == false)  // waits as long as needed
    #expect(fired)
    #expect(loop.now - start == .milliseconds(20))
    #expect(try loop.runOnce(timeout: .seconds(5)) == false)  // empty: returns at once
    #expect(loop.now - start == .milliseconds(20))
  }

  @Test func aManualClockMovesOnlyWhenToldOrWhenTheLoopWouldWait() throws {
    let loop = try makeLoop(.automatic, clock: .manual)
    let start = loop.now
    #expect(start == manualClockStart)
    var fired: [Duration] = []
    loop.callLater(.milliseconds(10)) { fired.append(loop.now - start) }
    loop.callLater(.milliseconds(30)) { fired.append(loop.now - start) }
    // An iteration that may not wait does not move it, nor does work.
    #expect(try loop.runOnce(timeout: .zero) == true)
    loop.updateTime()
    #expect(loop.now == start && fired.isEmpty)
    // Moved by hand past the first deadline: that timer is due at once.
    loop.advanceClock(by: .milliseconds(15))
    #expect(loop.now - start == .milliseconds(15))
    #expect(try loop.runOnce(timeout: .zero) == true)
    #expect(fired == [.milliseconds(15)])
    // Waiting for the second one jumps to its deadline.
    try loop.runUntilIdle()
    #expect(fired == [.milliseconds(15), .milliseconds(30)])
    #expect(loop.now - start == .milliseconds(30))
  }

  @Test func nowIsCachedUntilUpdated() throws {
    let loop = try EventLoop()
    let first = loop.now
    var spin = 0
    for i in 0..<1_000_000 { spin &+= i }
    #expect(spin > 0)
    #expect(loop.now == first)
    loop.updateTime()
    #expect(loop.now > first)
  }

  @Test func durationsSaturateInsteadOfTrapping() {
    #expect(Duration.milliseconds(3).saturatingNanoseconds == 3_000_000)
    #expect(Duration.seconds(-2).saturatingNanoseconds == -2_000_000_000)
    #expect(Duration.seconds(Int64.max).saturatingNanoseconds == .max)
    #expect(Duration.seconds(Int64.min).saturatingNanoseconds == .min)
    #expect(Duration.nanoseconds(1).saturatingNanoseconds == 1)
  }
}
