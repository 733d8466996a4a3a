import Glibc
import Testing
import TinyAsync

/// A shared object whose stored properties are checked for exclusivity at
/// run time (a class's properties are; a local's are not).
final class FiberShared {
  var counter = 0
  var dict: [String: Int] = ["a": 0, "b": 0]
  var log: [String] = []
}

/// Holds an `inout` access across a suspension of the calling fiber.
func bumpAfterSleep(_ value: inout Int, _ delay: Duration) throws {
  try sleep(for: delay)
  value += 1
}

/// A call that suspends the fiber, then returns 1.
func oneAfterSleep(_ delay: Duration) throws -> Int {
  try sleep(for: delay)
  return 1
}

final class Flag {
  var value = false
}

enum FiberTestLocal {
  @TaskLocal static var tag = "default"
}

@Suite("Fibers: stackful Swift code on the C coroutine level")
struct FiberTests {
  static let backends: [EventLoop.Backend] = [.epoll, .ioUring]
  struct Boom: Error, Equatable { let code: Int }

  // MARK: Spawning and running

  @Test(arguments: backends)
  func runFiberReturnsTheValueOnTheLoopThread(_ backend: EventLoop.Backend) throws {
    let loop = try makeLoop(backend)
    let me = pthread_self()
    let value = try loop.runFiber { () throws -> Int in
      #expect(pthread_equal(pthread_self(), me) != 0)
      #expect(EventLoop.current === loop)
      try sleep(for: .milliseconds(1))
      #expect(pthread_equal(pthread_self(), me) != 0)
      return 42
    }
    #expect(value == 42)
  }

  @Test(arguments: backends)
  func staticRunFiberMakesALoop(_ backend: EventLoop.Backend) throws {
    do {
      let value = try EventLoop.runFiber(backend: backend) { () throws -> String in
        #expect(EventLoop.current?.backend == backend)
        try sleep(for: .zero)
        return "done"
      }
      #expect(value == "done")
    } catch TinyAsyncError.backendUnavailable {
      try Test.cancel("SKIP: \(backend) unavailable here")
    }
  }

  @Test(arguments: backends)
  func runFiberRethrowsTheBodysError(_ backend: EventLoop.Backend) throws {
    let loop = try makeLoop(backend)
    #expect(throws: Boom(code: 7)) {
      try loop.runFiber { () throws -> Int in
        try sleep(for: .zero)
        throw Boom(code: 7)
      }
    }
  }

  @Test(arguments: backends)
  func fibersWakeInDeadlineOrder(_ backend: EventLoop.Backend) throws {
    let loop = try makeLoop(backend)
    let order = try loop.runFiber { () throws -> [Int] in
      var order: [Int] = []
      let a = loop.spawnFiber { try sleep(for: .milliseconds(30)); return 3 }
      let b = loop.spawnFiber { try sleep(for: .milliseconds(10)); return 1 }
      let c = loop.spawnFiber { try sleep(for: .milliseconds(20)); return 2 }
      order.append(try b.get())
      order.append(try c.get())
      order.append(try a.get())
      return order
    }
    #expect(order == [1, 2, 3])
  }

  @Test(arguments: backends)
  func sleepYieldsToQueuedWorkAndWaitsItsTime(_ backend: EventLoop.Backend) throws {
    let loop = try makeLoop(backend)
    try loop.runFiber {
      var ran = false
      loop.callSoon { ran = true }
      try sleep(for: .zero)  // sleep(0): what was queued runs first
      #expect(ran)
      let start = loop.now
      try sleep(for: .milliseconds(20))
      #expect(loop.now - start >= .milliseconds(20))
    }
  }

  @Test(arguments: backends)
  func namesAndIsDone(_ backend: EventLoop.Backend) throws {
    let loop = try makeLoop(backend)
    try loop.runFiber {
      let named = loop.spawnFiber(name: "worker") { try sleep(for: .milliseconds(1)) }
      let unnamed = loop.spawnFiber { 5 }
      #expect(named.name == "worker")
      #expect(unnamed.name.hasPrefix("fiber-"))
      #expect(!named.isDone && !unnamed.isDone)  // not started yet
      try named.get()
      #expect(try unnamed.get() == 5)
      #expect(named.isDone && unnamed.isDone)
    }
  }

  @Test(arguments: backends)
  func fibersRunUnderPlainRunToo(_ backend: EventLoop.Backend) throws {
    let loop = try makeLoop(backend)
    var trace: [String] = []
    let f = loop.spawnFiber { () throws -> Int in
      trace.append("start")
      try sleep(for: .milliseconds(5))
      trace.append("end")
      return 9
    }
    try loop.run()  // returns once the fiber has ended
    #expect(trace == ["start", "end"])
    #expect(f.isDone)
    #expect(try f.get() == 9)  // a finished fiber answers outside fibers too
  }

  // MARK: Overload resolution: sync in a fiber, async in async code

  @Test(arguments: backends)
  func theSyncOverloadsRunInAFiberAndTheAsyncOnesInAsyncCode(_ backend: EventLoop.Backend) throws {
    let loop = try makeLoop(backend)
    // In a fiber: only the synchronous forms compile (no await), and they park.
    try loop.runFiber {
      let other = loop.spawnFiber { 1 }
      try sleep(for: .milliseconds(1))                          // sync sleep(for:)
      #expect(other.isDone)                                      // it parked: the other ran
      let f = Future<Int>()
      loop.callSoon { f.succeed(2) }
      #expect(try f.get() == 2)                                  // sync Future.get()
      #expect(try withTimeout(.seconds(5)) { 3 } == 3)           // sync withTimeout
      let (x, y) = try gather(other, loop.spawnFiber { "y" })    // sync gather
      #expect(x == 1 && y == "y")
    }
    // In async code: the same spellings with await pick the async forms
    // (the synchronous ones would stop the program: no fiber here).
    let (v, w) = try loop.runUntilComplete { () async throws -> (Int, Int) in
      try await sleep(for: .milliseconds(1))                     // async sleep(for:)
      let f = Future<Int>()
      loop.callSoon { f.succeed(4) }
      let got = try await f.get()                                // async Future.get()
      let timed = try await withTimeout(.seconds(5)) { 5 }       // async withTimeout
      let fiber = loop.spawnFiber { () throws -> Int in try sleep(for: .milliseconds(2)); return 6 }
      let joined = try await fiber.value                         // async FiberHandle.value
      let joined2 = try await fiber.get()                        // async FiberHandle.get()
      let (a, b) = try await gather(loop.spawnFiber { 7 }, loop.spawnFiber { 8 })  // async gather of fibers
      #expect(got + timed + joined + joined2 + a + b == 4 + 5 + 6 + 6 + 7 + 8)
      return (got, timed)
    }
    #expect(v == 4 && w == 5)
  }

  @Test(arguments: backends)
  func taskLocalsDoNotCrossIntoFibers(_ backend: EventLoop.Backend) throws {
    let loop = try makeLoop(backend)
    let seen = try loop.runUntilComplete { () async throws -> String in
      try await FiberTestLocal.$tag.withValue("outer") { () async throws -> String in
        #expect(FiberTestLocal.tag == "outer")
        let fiber = loop.spawnFiber { FiberTestLocal.tag }
        return try await fiber.value
      }
    }
    #expect(seen == "default")
  }

  // MARK: Futures

  @Test(arguments: backends)
  func futureGetInFibers(_ backend: EventLoop.Backend) throws {
    let loop = try makeLoop(backend)
    try loop.runFiber {
      let f = Future<String>()
      let waiters = (0..<3).map { i in loop.spawnFiber { try f.get() + "\(i)" } }
      try sleep(for: .milliseconds(2))
      #expect(waiters.allSatisfy { !$0.isDone })
      f.succeed("v")
      #expect(try waiters.map { try $0.get() } == ["v0", "v1", "v2"])
      #expect(try f.get() == "v")  // done: at once

      let failing = Future<Int>()
      loop.callLater(.milliseconds(1)) { failing.fail(Boom(code: 1)) }
      #expect(throws: Boom(code: 1)) { try failing.get() }

      let cancelled = Future<Int>()
      loop.callSoon { cancelled.cancel() }
      #expect(throws: TinyAsyncError.cancelled) { try cancelled.get() }

      // A future completed by an async task.
      let fromTask = Future<Int>()
      loop.spawn { try await sleep(for: .milliseconds(1)); fromTask.succeed(11) }
      #expect(try fromTask.get() == 11)
    }
  }

  @Test(arguments: backends)
  func cancellingAFiberWaitingOnAFutureLeavesTheFutureAlone(_ backend: EventLoop.Backend) throws {
    let loop = try makeLoop(backend)
    try loop.runFiber {
      let f = Future<Int>()
      let waiter = loop.spawnFiber { try f.get() }
      try sleep(for: .milliseconds(1))
      waiter.cancel()
      #expect(throws: TinyAsyncError.cancelled) { try waiter.get() }
      #expect(!f.isDone)
      f.succeed(3)
      #expect(try f.get() == 3)
    }
  }

  // MARK: Errors

  @Test(arguments: backends)
  func aFibersErrorReachesItsHandleWithItsCase(_ backend: EventLoop.Backend) throws {
    let loop = try makeLoop(backend)
    try loop.runFiber {
      let custom = loop.spawnFiber { () throws -> Int in
        try sleep(for: .milliseconds(1))
        throw Boom(code: 42)
      }
      do {
        _ = try custom.get()
        Issue.record("no error")
      } catch let error as Boom {
        #expect(error.code == 42)
      }
      let timed = loop.spawnFiber { try withTimeout(.milliseconds(1)) { try sleep(for: .seconds(10)) } }
      do {
        try timed.get()
        Issue.record("no error")
      } catch let error as TinyAsyncError {
        #expect(error == .timedOut)
        #expect(error.errno == ETIMEDOUT)
      }
    }
  }

  // MARK: Cancellation

  @Test(arguments: backends)
  func cancelUnwindsASleepingFiber(_ backend: EventLoop.Backend) throws {
    let loop = try makeLoop(backend)
    try loop.runFiber {
      var unwound = false
      weak var token: Token?
      let sleeper = loop.spawnFiber { () throws -> Int in
        let held = Token()
        token = held
        defer { unwound = true; withExtendedLifetime(held) {} }
        try sleep(for: .seconds(10))
        return 1
      }
      try sleep(for: .milliseconds(2))
      #expect(token != nil)
      let start = loop.now
      sleeper.cancel()
      #expect(throws: TinyAsyncError.cancelled) { try sleeper.get() }
      #expect(loop.now - start < .seconds(1))
      #expect(unwound)
      #expect(token == nil)  // its frames let go of what they held
      #expect(sleeper.isDone)
      sleeper.cancel()  // after the end: nothing
    }
  }

  @Test(arguments: backends)
  func aFiberCancelledBeforeItStartsNeverRuns(_ backend: EventLoop.Backend) throws {
    let loop = try makeLoop(backend)
    try loop.runFiber {
      var ran = false
      let f = loop.spawnFiber { ran = true }
      f.cancel()
      #expect(throws: TinyAsyncError.cancelled) { try f.get() }
      #expect(!ran)
    }
  }

  @Test(arguments: backends)
  func aFiberMayCatchCancellationAndReturn(_ backend: EventLoop.Backend) throws {
    let loop = try makeLoop(backend)
    try loop.runFiber {
      let f = loop.spawnFiber { () -> String in
        do {
          try sleep(for: .seconds(10))
          return "slept"
        } catch {
          #expect(error as? TinyAsyncError == .cancelled)
          return "caught"
        }
      }
      try sleep(for: .milliseconds(1))
      f.cancel()
      #expect(try f.get() == "caught")
    }
  }

  @Test(arguments: backends)
  func aFiberCancellingItselfThrowsAtItsNextSuspension(_ backend: EventLoop.Backend) throws {
    let loop = try makeLoop(backend)
    try loop.runFiber {
      var me: FiberHandle<Void>?
      var reached = false
      let f = loop.spawnFiber {
        me!.cancel()
        reached = true  // cancel does not stop the code that runs
        try sleep(for: .zero)
        Issue.record("the sleep should have thrown")
      }
      me = f
      #expect(throws: TinyAsyncError.cancelled) { try f.get() }
      #expect(reached)
      me = nil
    }
  }

  @Test(arguments: backends)
  func runFiberCancelsAndFinishesWhatIsLeft(_ backend: EventLoop.Backend) throws {
    let loop = try makeLoop(backend)
    var unwound = 0
    var asyncUnwound = false
    let start = loop.now
    try loop.runFiber {
      for _ in 0..<3 {
        loop.spawnFiber { defer { unwound += 1 }; try sleep(for: .seconds(10)) }
      }
      loop.spawn { defer { asyncUnwound = true }; try await sleep(for: .seconds(10)) }
      try sleep(for: .milliseconds(1))
    }
    #expect(unwound == 3)
    #expect(asyncUnwound)
    #expect(loop.now - start < .seconds(5))
  }

  @Test(arguments: backends)
  func runUntilCompleteAlsoFinishesFibers(_ backend: EventLoop.Backend) throws {
    let loop = try makeLoop(backend)
    let unwound = try loop.runUntilComplete { () async throws -> LoopThreadBox<Flag> in
      let unwound = Flag()
      loop.spawnFiber { defer { unwound.value = true }; try sleep(for: .seconds(10)) }
      try await sleep(for: .milliseconds(1))
      return LoopThreadBox(unwound)
    }
    #expect(unwound.value.value)
  }

  // MARK: Timeouts

  @Test(arguments: backends)
  func withTimeoutInAFiber(_ backend: EventLoop.Backend) throws {
    let loop = try makeLoop(backend)
    try loop.runFiber {
      // Expires: the sleep throws, the scope rethrows.
      let start = loop.now
      #expect(throws: TinyAsyncError.timedOut) {
        try withTimeout(.milliseconds(10)) { try sleep(for: .seconds(10)) }
      }
      let took = loop.now - start
      #expect(took >= .milliseconds(10) && took < .seconds(5))
      // Returns first: its value.
      #expect(try withTimeout(.seconds(10)) { try oneAfterSleep(.milliseconds(1)) } == 1)
      // The scope is gone after it: a later sleep is not interrupted.
      try sleep(for: .milliseconds(15))
      // Nested: the inner, shorter one fires; the outer one still holds.
      let inner = try withTimeout(.seconds(10)) { () throws -> String in
        do {
          try withTimeout(.milliseconds(5)) { try sleep(for: .seconds(10)) }
          return "no"
        } catch TinyAsyncError.timedOut {
          try sleep(for: .milliseconds(1))  // the outer scope has not expired
          return "inner expired"
        }
      }
      #expect(inner == "inner expired")
      // The outer, shorter one fires inside a longer inner one.
      #expect(throws: TinyAsyncError.timedOut) {
        try withTimeout(.milliseconds(5)) {
          try withTimeout(.seconds(10)) { try sleep(for: .seconds(10)) }
        }
      }
      // A body that catches the timeout and returns is not overruled.
      let caught = try withTimeout(.milliseconds(2)) { () -> Int in
        (try? sleep(for: .seconds(10))) == nil ? 7 : 0
      }
      #expect(caught == 7)
      // A future's and a fiber's get() time out too; they keep running.
      let never = Future<Int>()
      #expect(throws: TinyAsyncError.timedOut) { try withTimeout(.milliseconds(2)) { try never.get() } }
      let slow = loop.spawnFiber { () throws -> Int in try sleep(for: .milliseconds(30)); return 3 }
      #expect(throws: TinyAsyncError.timedOut) { try withTimeout(.milliseconds(2)) { try slow.get() } }
      #expect(try slow.get() == 3)
      // Zero: already expired.
      #expect(throws: TinyAsyncError.timedOut) { try withTimeout(.zero) { try sleep(for: .zero) } }
    }
  }

  // MARK: gather

  @Test(arguments: backends)
  func gatherKeepsArgumentOrder(_ backend: EventLoop.Backend) throws {
    let loop = try makeLoop(backend)
    let (x, y, z) = try loop.runFiber {
      let a = loop.spawnFiber { try sleep(for: .milliseconds(30)); return 1 }
      let b = loop.spawnFiber { try sleep(for: .milliseconds(10)); return "two" }
      let c = loop.spawnFiber { try sleep(for: .milliseconds(20)); return 3.0 }
      return try gather(a, b, c)
    }
    #expect(x == 1 && y == "two" && z == 3.0)
  }

  @Test(arguments: backends)
  func gatherThrowsTheFirstFailureByPositionAfterCancellingTheRest(_ backend: EventLoop.Backend) throws {
    let loop = try makeLoop(backend)
    try loop.runFiber {
      var slowUnwound = false
      let start = loop.now
      let slow = loop.spawnFiber { () throws -> Int in
        defer { slowUnwound = true }
        try sleep(for: .seconds(10))
        return 0
      }
      // Seconds, not milliseconds: on a loaded machine two timers a few ms
      // apart can come due in one iteration, and both would fail.
      let late = loop.spawnFiber { () throws -> Int in try sleep(for: .seconds(5)); throw Boom(code: 2) }
      let early = loop.spawnFiber { () throws -> Int in try sleep(for: .milliseconds(1)); throw Boom(code: 1) }
      let fine = loop.spawnFiber { 4 }
      // `late` (position 1) failed after `early` (2): by position, it wins
      // only if it failed on its own; here `early`'s failure cancels it first.
      #expect(throws: Boom(code: 1)) { try gather(slow, late, early, fine) }
      #expect(slowUnwound)
      #expect(slow.isDone && late.isDone)
      #expect(loop.now - start < .seconds(5))

      // Both failed on their own before gather looked: position decides.
      let p0 = loop.spawnFiber { () throws -> Int in throw Boom(code: 10) }
      let p1 = loop.spawnFiber { () throws -> Int in throw Boom(code: 11) }
      try sleep(for: .zero)
      #expect(throws: Boom(code: 10)) { try gather(p0, p1) }
    }
  }

  @Test(arguments: backends)
  func gatherInterruptedCancelsAndFinishesAll(_ backend: EventLoop.Backend) throws {
    let loop = try makeLoop(backend)
    try loop.runFiber {
      var unwound = 0
      let a = loop.spawnFiber { defer { unwound += 1 }; try sleep(for: .seconds(10)) }
      let b = loop.spawnFiber { defer { unwound += 1 }; try sleep(for: .seconds(10)) }
      #expect(throws: TinyAsyncError.timedOut) {
        try withTimeout(.milliseconds(5)) { try gather(a, b) }
      }
      #expect(unwound == 2)

      var unwound2 = 0
      let c = loop.spawnFiber { defer { unwound2 += 1 }; try sleep(for: .seconds(10)) }
      let gatherer = loop.spawnFiber { try gather(c, loop.spawnFiber { defer { unwound2 += 1 }; try sleep(for: .seconds(10)) }) }
      try sleep(for: .milliseconds(2))
      gatherer.cancel()
      #expect(throws: TinyAsyncError.cancelled) { try gatherer.get() }
      #expect(unwound2 == 2)
      #expect(c.isDone)
    }
  }

  @Test(arguments: backends)
  func gatherOfFinishedFibersAnswersAtOnce(_ backend: EventLoop.Backend) throws {
    let loop = try makeLoop(backend)
    try loop.runFiber {
      let a = loop.spawnFiber { 1 }
      let b = loop.spawnFiber { 2 }
      _ = try a.get()
      _ = try b.get()
      let (x, y) = try gather(a, b)
      #expect(x == 1 && y == 2)
    }
  }

  @Test(arguments: backends)
  func asyncGatherOfFibersCancelsTheRestOnFailure(_ backend: EventLoop.Backend) throws {
    let loop = try makeLoop(backend)
    let error = try loop.runUntilComplete { () async throws -> Boom? in
      var unwound = false
      defer { #expect(unwound) }
      let slow = loop.spawnFiber { () throws -> Int in defer { unwound = true }; try sleep(for: .seconds(10)); return 1 }
      let bad = loop.spawnFiber { () throws -> Int in try sleep(for: .milliseconds(1)); throw Boom(code: 5) }
      do {
        _ = try await gather(slow, bad)
        return nil
      } catch let error as Boom {
        return error
      }
    }
    #expect(error == Boom(code: 5))
  }

  // MARK: Exclusivity across switches

  @Test(arguments: backends)
  func fibersSuspendedInsideAccessesDoNotBreakEachOther(_ backend: EventLoop.Backend) throws {
    let loop = try makeLoop(backend)
    let shared = FiberShared()
    try loop.runFiber {
      // Each fiber holds a modify access to the same class property (checked
      // at run time) across a sleep, overlapping with the others'. Without
      // the exclusivity swap at each switch, the second would stop the
      // program with "Simultaneous accesses".
      let inouts = (0..<4).map { i in
        loop.spawnFiber { try bumpAfterSleep(&shared.counter, .milliseconds(1 + i)) }
      }
      let dicts = (0..<4).map { i in
        loop.spawnFiber {
          try bumpAfterSleep(&shared.dict[i % 2 == 0 ? "a" : "b", default: 0], .milliseconds(2 + i))
        }
      }
      let compound = (0..<4).map { i in
        loop.spawnFiber { shared.dict["a", default: 0] += try oneAfterSleep(.milliseconds(1 + i)) }
      }
      for f in inouts + dicts + compound { try f.get() }
    }
    #expect(shared.counter == 4)
    #expect(shared.dict == ["a": 6, "b": 2])
  }

  @Test func aConflictInsideOneFiberIsStillCaught() async throws {
    // The swap hides a parked fiber's accesses from the others, not a
    // fiber's own: overlapping accesses within one fiber still stop it.
    let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
      let loop = try EventLoop(backend: .epoll)
      let shared = FiberShared()
      try loop.runFiber {
        try bumpAfterSleep(&shared.counter, .zero)  // fine
        func nested(_ value: inout Int) throws {
          try sleep(for: .zero)
          shared.counter += 1  // while `value` (shared.counter) is being modified
          value += 1
        }
        try nested(&shared.counter)
      }
    }
    let text = String(decoding: result?.standardErrorContent ?? [], as: UTF8.self)
    #expect(text.contains("Simultaneous accesses"), "\(text)")
  }

  // MARK: Many fibers

  @Test(arguments: backends)
  func tenThousandFibersSleepConcurrently(_ backend: EventLoop.Backend) throws {
    let loop = try makeLoop(backend)
    let count = 10_000
    let start = loop.now
    let (woke, total) = try loop.runFiber { () throws -> (Int, Int) in
      var woke = 0
      let fibers = (0..<count).map { i in
        loop.spawnFiber { () throws -> Int in
          try sleep(for: .milliseconds(50))
          woke += 1
          return i
        }
      }
      var total = 0
      for f in fibers { total += try f.get() }
      return (woke, total)
    }
    let wall = loop.now - start
    #expect(woke == count)
    #expect(total == count * (count - 1) / 2)
    #expect(wall >= .milliseconds(50))
    #expect(wall < .seconds(10), "10,000 sleepers of 50 ms took \(wall)")
  }
}

/// Misuse and reports, each in a child process (swift-testing exit tests).
@Suite("Fibers: misuse stops with a message; lost errors are logged")
struct FiberExitTests {
  struct Lost: Error {}

  @Test func syncSleepOutsideAFiberStops() async {
    let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
      let loop = try EventLoop()
      loop.callSoon { try? sleep(for: .milliseconds(1)) }  // on the loop's stack, not a fiber
      try loop.run()
    }
    let text = String(decoding: result?.standardErrorContent ?? [], as: UTF8.self)
    #expect(text.contains("sleep(for:) was called outside a fiber"), "\(text)")
  }

  @Test func futureGetOutsideAFiberStops() async {
    let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
      let loop = try EventLoop()
      loop.callSoon { _ = try? Future<Int>(on: loop).get() }
      try loop.run()
    }
    let text = String(decoding: result?.standardErrorContent ?? [], as: UTF8.self)
    #expect(text.contains("Future.get() was called outside a fiber"), "\(text)")
  }

  static func timeoutWithoutAFiber() throws {
    _ = try withTimeout(.seconds(1)) { 1 }  // synchronous code, no fiber
  }

  @Test func withTimeoutOutsideAFiberStops() async {
    let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
      try FiberExitTests.timeoutWithoutAFiber()
    }
    let text = String(decoding: result?.standardErrorContent ?? [], as: UTF8.self)
    #expect(text.contains("withTimeout was called outside a fiber"), "\(text)")
  }

  @Test func aFailedFiberNobodyJoinedIsLogged() async {
    let result = await #expect(
      processExitsWith: .success, observing: [\.standardOutputContent, \.standardErrorContent]
    ) {
      try EventLoop.runFiber {
        EventLoop.current!.spawnFiber(name: "careless") { () throws -> Int in
          try sleep(for: .zero)
          throw FiberExitTests.Lost()
        }
        try sleep(for: .milliseconds(5))
      }
    }
    let output = String(decoding: (result?.standardOutputContent ?? []) + (result?.standardErrorContent ?? []), as: UTF8.self)
    #expect(output.contains("never retrieved"), "\(output)")
    #expect(output.contains("Lost"), "\(output)")
  }

  @Test func aCancelledFiberIsNotLogged() async {
    let result = await #expect(
      processExitsWith: .success, observing: [\.standardOutputContent, \.standardErrorContent]
    ) {
      try EventLoop.runFiber {
        let f = EventLoop.current!.spawnFiber { try sleep(for: .seconds(10)) }
        try sleep(for: .milliseconds(1))
        f.cancel()
        try sleep(for: .milliseconds(1))
      }
    }
    let output = String(decoding: (result?.standardOutputContent ?? []) + (result?.standardErrorContent ?? []), as: UTF8.self)
    #expect(!output.contains("never retrieved"), "\(output)")
  }
}
