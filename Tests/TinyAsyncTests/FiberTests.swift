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

/// Sixteen words of a fiber's own, kept on its stack across switches.
private struct Pattern: Equatable {
  var words: (Int, Int, Int, Int, Int, Int, Int, Int, Int, Int, Int, Int, Int, Int, Int, Int)

  init(_ seed: Int) {
    words = (seed, seed &* 3, seed &* 5, seed &* 7, seed &* 11, seed &* 13, seed &* 17, seed &* 19,
             seed &* 23, seed &* 29, seed &* 31, seed &* 37, seed &* 41, seed &* 43, seed &* 47, seed &* 53)
  }

  static func == (a: Pattern, b: Pattern) -> Bool {
    withUnsafeBytes(of: a.words) { x in withUnsafeBytes(of: b.words) { y in x.elementsEqual(y) } }
  }
}

/// Recurses `depth` frames, each with locals of its own, and sleeps at the
/// bottom: a deep stack to copy out and back. Returns the sum 0 + ... + depth,
/// or -1 if a frame's locals changed meanwhile.
@inline(never)
private func deepSleep(_ depth: Int, _ delay: Duration) throws -> Int {
  let mine = Pattern(depth)
  let below = depth == 0 ? 0 : try deepSleep(depth - 1, delay)
  if depth == 0 { try sleep(for: delay) }
  return below < 0 || mine != Pattern(depth) ? -1 : below + depth
}

/// A log the loop's fibers share (they all run on its one thread).
private final class Log<Entry> {
  var entries: [Entry] = []
  func append(_ entry: Entry) { entries.append(entry) }
}

extension EventLoop {
  /// `runFiberUntilComplete(body)` with `body` in a fiber on `stack`: on the private
  /// stack, the main fiber itself; on the shared one, a fiber the main
  /// fiber (whose stack is always private) waits for.
  func runFiberUntilComplete<Value>(on stack: FiberStack, _ body: @escaping () throws -> Value) throws -> Value {
    switch stack {
    case .private: try runFiberUntilComplete(body)
    case .shared: try runFiberUntilComplete { try self.spawnFiber(name: "main, shared", stack: .shared, body).get() }
    }
  }
}

/// Every fiber operation, each test on both backends and, where it makes
/// sense, with its fibers on both kinds of stack: `.private` (a guarded
/// stack each) and `.shared` (by turns on the loop's one shared stack, each
/// one's frames copied out while it is parked, so nothing the loop or
/// another fiber touches meanwhile may be on it). The loops run on the
/// manual clock (see `TestClock`): timers fire exactly on time and the
/// tests do not sleep.
@Suite("Fibers: stackful Swift code on the C coroutine level")
struct FiberTests {
  static let backends: [EventLoop.Backend] = [.epoll, .ioUring]
  static let stacks: [FiberStack] = [.private, .shared]
  struct Boom: Error, Equatable { let code: Int }

  // MARK: Spawning and running

  @Test(arguments: backends, stacks)
  func runFiberReturnsTheValueOnTheLoopThread(_ backend: EventLoop.Backend, _ stack: FiberStack) throws {
    let loop = try makeLoop(backend, clock: .manual)
    let me = pthread_self()
    let value = try loop.runFiberUntilComplete(on: stack) { () throws -> Int in
      #expect(pthread_equal(pthread_self(), me) != 0)
      #expect(EventLoop.current === loop)
      try sleep(for: .milliseconds(1))
      #expect(pthread_equal(pthread_self(), me) != 0)
      return 42
    }
    #expect(value == 42)
  }

  /// The main fiber of `EventLoop.runFiber` is private: one kind of stack.
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

  @Test(arguments: backends, stacks)
  func runFiberRethrowsTheBodysError(_ backend: EventLoop.Backend, _ stack: FiberStack) throws {
    let loop = try makeLoop(backend, clock: .manual)
    #expect(throws: Boom(code: 7)) {
      try loop.runFiberUntilComplete(on: stack) { () throws -> Int in
        try sleep(for: .zero)
        throw Boom(code: 7)
      }
    }
  }

  @Test(arguments: backends, stacks)
  func fibersWakeInDeadlineOrder(_ backend: EventLoop.Backend, _ stack: FiberStack) throws {
    let loop = try makeLoop(backend, clock: .manual)
    let order = try loop.runFiberUntilComplete(on: stack) { () throws -> [Int] in
      var order: [Int] = []
      let start = loop.now
      let a = loop.spawnFiber(stack: stack) { try sleep(for: .milliseconds(30)); return 3 }
      let b = loop.spawnFiber(stack: stack) { try sleep(for: .milliseconds(10)); return 1 }
      let c = loop.spawnFiber(stack: stack) { try sleep(for: .milliseconds(20)); return 2 }
      order.append(try b.get())
      #expect(loop.now - start == .milliseconds(10))
      order.append(try c.get())
      order.append(try a.get())
      #expect(loop.now - start == .milliseconds(30))
      return order
    }
    #expect(order == [1, 2, 3])

    // Sleepers that log as they wake, while the waiting fiber sleeps too.
    let logged = try loop.runFiberUntilComplete(on: stack) { () throws -> [Int] in
      let log = Log<Int>()
      let sleepers = [30, 10, 20, 0].map { ms in
        loop.spawnFiber(stack: stack) {
          try sleep(for: .milliseconds(ms))
          log.append(ms)
        }
      }
      let start = loop.now
      try sleep(for: .milliseconds(5))
      #expect(loop.now - start == .milliseconds(5))
      #expect(log.entries == [0])
      for s in sleepers { try s.get() }
      return log.entries
    }
    #expect(logged == [0, 10, 20, 30])
  }

  @Test(arguments: backends, stacks)
  func sleepYieldsToQueuedWorkAndWaitsItsTime(_ backend: EventLoop.Backend, _ stack: FiberStack) throws {
    let loop = try makeLoop(backend, clock: .manual)
    try loop.runFiberUntilComplete(on: stack) {
      var ran = false
      loop.callSoon { ran = true }
      let start = loop.now
      try sleep(for: .zero)  // sleep(0): what was queued runs first
      #expect(ran)
      #expect(loop.now == start)  // and no time passed
      try sleep(for: .milliseconds(20))
      #expect(loop.now - start == .milliseconds(20))
    }
  }

  @Test(arguments: backends, stacks)
  func namesAndIsDone(_ backend: EventLoop.Backend, _ stack: FiberStack) throws {
    let loop = try makeLoop(backend, clock: .manual)
    try loop.runFiberUntilComplete(on: stack) {
      let named = loop.spawnFiber(name: "worker", stack: stack) { try sleep(for: .milliseconds(1)) }
      let unnamed = loop.spawnFiber(stack: stack) { 5 }
      #expect(named.name == "worker")
      #expect(unnamed.name.hasPrefix("fiber-"))
      #expect(!named.isDone && !unnamed.isDone)  // not started yet
      try named.get()
      #expect(try unnamed.get() == 5)
      #expect(named.isDone && unnamed.isDone)
    }
  }

  @Test(arguments: backends, stacks)
  func fibersRunUnderPlainRunToo(_ backend: EventLoop.Backend, _ stack: FiberStack) throws {
    let loop = try makeLoop(backend, clock: .manual)
    var trace: [String] = []
    let f = loop.spawnFiber(stack: stack) { () throws -> Int in
      trace.append("start")
      try sleep(for: .milliseconds(5))
      trace.append("end")
      return 9
    }
    try loop.runUntilIdle()  // returns once the fiber has ended
    #expect(trace == ["start", "end"])
    #expect(f.isDone)
    #expect(try f.get() == 9)  // a finished fiber answers outside fibers too
  }

  // MARK: Overload resolution: sync in a fiber, async in async code

  @Test(arguments: backends, stacks)
  func theSyncOverloadsRunInAFiberAndTheAsyncOnesInAsyncCode(
    _ backend: EventLoop.Backend, _ stack: FiberStack
  ) throws {
    let loop = try makeLoop(backend, clock: .manual)
    // In a fiber: only the synchronous forms compile (no await), and they park.
    try loop.runFiberUntilComplete(on: stack) {
      let other = loop.spawnFiber(stack: stack) { 1 }
      try sleep(for: .milliseconds(1))                          // sync sleep(for:)
      #expect(other.isDone)                                      // it parked: the other ran
      let f = Future<Int>()
      loop.callSoon { f.succeed(2) }
      #expect(try f.get() == 2)                                  // sync Future.get()
      #expect(try withTimeout(.seconds(5)) { 3 } == 3)           // sync withTimeout
      let (x, y) = try gather(other, loop.spawnFiber(stack: stack) { "y" })  // sync gather
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
      let fiber = loop.spawnFiber(stack: stack) { () throws -> Int in try sleep(for: .milliseconds(2)); return 6 }
      let joined = try await fiber.value                         // async FiberHandle.value
      let joined2 = try await fiber.get()                        // async FiberHandle.get()
      let (a, b) = try await gather(loop.spawnFiber(stack: stack) { 7 }, loop.spawnFiber(stack: stack) { 8 })  // async gather of fibers
      #expect(got + timed + joined + joined2 + a + b == 4 + 5 + 6 + 6 + 7 + 8)
      return (got, timed)
    }
    #expect(v == 4 && w == 5)
  }

  @Test(arguments: backends, stacks)
  func taskLocalsDoNotCrossIntoFibers(_ backend: EventLoop.Backend, _ stack: FiberStack) throws {
    let loop = try makeLoop(backend, clock: .manual)
    let seen = try loop.runUntilComplete { () async throws -> String in
      try await FiberTestLocal.$tag.withValue("outer") { () async throws -> String in
        #expect(FiberTestLocal.tag == "outer")
        let fiber = loop.spawnFiber(stack: stack) { FiberTestLocal.tag }
        return try await fiber.value
      }
    }
    #expect(seen == "default")
  }

  // MARK: Stacks

  /// Shared and private fibers interleave; each checks its locals after
  /// every switch while the others overwrite the shared stack.
  @Test(arguments: backends)
  func localsSurviveSwitchesBetweenSharedFibers(_ backend: EventLoop.Backend) throws {
    let loop = try makeLoop(backend, clock: .manual)
    let sums = try loop.runFiberUntilComplete { () throws -> [Int] in
      let fibers = (0..<60).map { i in
        loop.spawnFiber(stack: i % 3 == 2 ? .private : .shared) { () throws -> Int in
          var mine = Pattern(i)
          var total = 0
          for round in 0..<20 {
            try sleep(for: round % 4 == 0 ? .milliseconds(i % 3) : .zero)
            #expect(mine == Pattern(i + round))
            total += mine.words.0
            mine = Pattern(i + round + 1)
          }
          return total
        }
      }
      // Deep stacks, shared too.
      let deep = (0..<4).map { i in
        loop.spawnFiber(stack: .shared) { try deepSleep(40 + 20 * i, .milliseconds(1 + i)) }
      }
      return try fibers.map { try $0.get() } + deep.map { try $0.get() }
    }
    for i in 0..<60 { #expect(sums[i] == (0..<20).reduce(0) { $0 + i + $1 }) }
    for i in 0..<4 {
      let depth = 40 + 20 * i
      #expect(sums[60 + i] == depth * (depth + 1) / 2)
    }
  }

  // MARK: Futures

  @Test(arguments: backends, stacks)
  func futureGetInFibers(_ backend: EventLoop.Backend, _ stack: FiberStack) throws {
    let loop = try makeLoop(backend, clock: .manual)
    try loop.runFiberUntilComplete(on: stack) {
      let f = Future<String>()
      let waiters = (0..<3).map { i in loop.spawnFiber(stack: stack) { try f.get() + "\(i)" } }
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

  @Test(arguments: backends, stacks)
  func futuresCompletedByATimerAFiberAndATaskWakeTheirFibers(
    _ backend: EventLoop.Backend, _ stack: FiberStack
  ) throws {
    let loop = try makeLoop(backend, clock: .manual)
    let values = try loop.runFiberUntilComplete(on: stack) { () throws -> [String] in
      // Completed by a timer's callback, by another fiber, and by an async
      // task, while several fibers wait on each.
      let byTimer = Future<String>()
      let byFiber = Future<String>()
      let byTask = Future<String>()
      loop.callLater(.milliseconds(2)) { byTimer.succeed("timer") }
      loop.spawnFiber(stack: stack) {
        try sleep(for: .milliseconds(1))
        byFiber.succeed("fiber")
      }
      loop.spawn {
        try await sleep(for: .milliseconds(3))
        byTask.succeed("task")
      }
      let waiters = [byTimer, byFiber, byTask, byTimer, byFiber, byTask].map { future in
        loop.spawnFiber(stack: stack) { try future.get() }
      }
      // A fiber's result, from another fiber.
      let worker = loop.spawnFiber(stack: stack) { () throws -> String in
        try sleep(for: .milliseconds(1))
        return "worker"
      }
      let waiter = loop.spawnFiber(stack: stack) { try worker.get() + "!" }
      return try waiters.map { try $0.get() } + [try waiter.get(), try byTask.get()]
    }
    #expect(values == ["timer", "fiber", "task", "timer", "fiber", "task", "worker!", "task"])
  }

  @Test(arguments: backends, stacks)
  func cancellingAFiberWaitingOnAFutureLeavesTheFutureAlone(
    _ backend: EventLoop.Backend, _ stack: FiberStack
  ) throws {
    let loop = try makeLoop(backend, clock: .manual)
    try loop.runFiberUntilComplete(on: stack) {
      let f = Future<Int>()
      let waiter = loop.spawnFiber(stack: stack) { try f.get() }
      try sleep(for: .milliseconds(1))
      waiter.cancel()
      #expect(throws: TinyAsyncError.cancelled) { try waiter.get() }
      #expect(!f.isDone)
      f.succeed(3)
      #expect(try f.get() == 3)
    }
  }

  // MARK: Errors

  @Test(arguments: backends, stacks)
  func aFibersErrorReachesItsHandleWithItsCase(_ backend: EventLoop.Backend, _ stack: FiberStack) throws {
    let loop = try makeLoop(backend, clock: .manual)
    try loop.runFiberUntilComplete(on: stack) {
      let custom = loop.spawnFiber(stack: stack) { () throws -> Int in
        try sleep(for: .milliseconds(1))
        throw Boom(code: 42)
      }
      do {
        _ = try custom.get()
        Issue.record("no error")
      } catch let error as Boom {
        #expect(error.code == 42)
      }
      let timed = loop.spawnFiber(stack: stack) { try withTimeout(.milliseconds(1)) { try sleep(for: .seconds(10)) } }
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

  @Test(arguments: backends, stacks)
  func cancelUnwindsASleepingFiber(_ backend: EventLoop.Backend, _ stack: FiberStack) throws {
    let loop = try makeLoop(backend, clock: .manual)
    try loop.runFiberUntilComplete(on: stack) {
      var unwound = false
      weak var token: Token?
      let sleeper = loop.spawnFiber(stack: stack) { () throws -> Int in
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
      #expect(loop.now == start)  // at once, not at the sleep's end
      #expect(unwound)
      #expect(token == nil)  // its frames let go of what they held
      #expect(sleeper.isDone)
      sleeper.cancel()  // after the end: nothing
    }
  }

  @Test(arguments: backends, stacks)
  func aFiberCancelledBeforeItStartsNeverRuns(_ backend: EventLoop.Backend, _ stack: FiberStack) throws {
    let loop = try makeLoop(backend, clock: .manual)
    try loop.runFiberUntilComplete(on: stack) {
      var ran = false
      let f = loop.spawnFiber(stack: stack) { ran = true }
      f.cancel()
      #expect(throws: TinyAsyncError.cancelled) { try f.get() }
      #expect(!ran)
    }
  }

  @Test(arguments: backends, stacks)
  func aFiberMayCatchCancellationAndReturn(_ backend: EventLoop.Backend, _ stack: FiberStack) throws {
    let loop = try makeLoop(backend, clock: .manual)
    try loop.runFiberUntilComplete(on: stack) {
      let f = loop.spawnFiber(stack: stack) { () -> String in
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

  @Test(arguments: backends, stacks)
  func aFiberCancellingItselfThrowsAtItsNextSuspension(
    _ backend: EventLoop.Backend, _ stack: FiberStack
  ) throws {
    let loop = try makeLoop(backend, clock: .manual)
    try loop.runFiberUntilComplete(on: stack) {
      var me: FiberHandle<Void>?
      var reached = false
      let f = loop.spawnFiber(stack: stack) {
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

  @Test(arguments: backends, stacks)
  func runFiberCancelsAndFinishesWhatIsLeft(_ backend: EventLoop.Backend, _ stack: FiberStack) throws {
    let loop = try makeLoop(backend, clock: .manual)
    var unwound = 0
    var asyncUnwound = false
    let start = loop.now
    try loop.runFiberUntilComplete {
      for _ in 0..<3 {
        loop.spawnFiber(stack: stack) { defer { unwound += 1 }; try sleep(for: .seconds(10)) }
      }
      loop.spawn { defer { asyncUnwound = true }; try await sleep(for: .seconds(10)) }
      try sleep(for: .milliseconds(1))
    }
    #expect(unwound == 3)
    #expect(asyncUnwound)
    #expect(loop.now - start == .milliseconds(1))  // cancelled then, not slept out
  }

  @Test(arguments: backends, stacks)
  func runUntilCompleteAlsoFinishesFibers(_ backend: EventLoop.Backend, _ stack: FiberStack) throws {
    let loop = try makeLoop(backend, clock: .manual)
    let unwound = try loop.runUntilComplete { () async throws -> LoopThreadBox<Flag> in
      let unwound = Flag()
      loop.spawnFiber(stack: stack) { defer { unwound.value = true }; try sleep(for: .seconds(10)) }
      try await sleep(for: .milliseconds(1))
      return LoopThreadBox(unwound)
    }
    #expect(unwound.value.value)
  }

  // MARK: Timeouts

  @Test(arguments: backends, stacks)
  func withTimeoutInAFiber(_ backend: EventLoop.Backend, _ stack: FiberStack) throws {
    let loop = try makeLoop(backend, clock: .manual)
    try loop.runFiberUntilComplete(on: stack) {
      // Expires: the sleep throws, the scope rethrows, at the deadline.
      let start = loop.now
      #expect(throws: TinyAsyncError.timedOut) {
        try withTimeout(.milliseconds(10)) { try sleep(for: .seconds(10)) }
      }
      #expect(loop.now - start == .milliseconds(10))
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
      let slow = loop.spawnFiber(stack: stack) { () throws -> Int in try sleep(for: .milliseconds(30)); return 3 }
      #expect(throws: TinyAsyncError.timedOut) { try withTimeout(.milliseconds(2)) { try slow.get() } }
      #expect(try slow.get() == 3)
      // Zero: already expired.
      #expect(throws: TinyAsyncError.timedOut) { try withTimeout(.zero) { try sleep(for: .zero) } }
    }
  }

  @Test(arguments: backends, stacks)
  func severalFibersInScopesOfTheirOwnAtOnce(_ backend: EventLoop.Backend, _ stack: FiberStack) throws {
    let loop = try makeLoop(backend, clock: .manual)
    try loop.runFiberUntilComplete(on: stack) { () throws in
      let start = loop.now
      let scoped = (0..<8).map { i in
        loop.spawnFiber(stack: stack) { () throws -> String in
          do {
            return try withTimeout(.milliseconds(2 + i)) { () throws -> String in
              try withTimeout(.seconds(10)) { try sleep(for: .seconds(10)) }
              return "slept"
            }
          } catch TinyAsyncError.timedOut {
            #expect(loop.now - start == .milliseconds(2 + i))  // each at its own deadline
            try sleep(for: .milliseconds(1))  // the scope is gone
            return "timed out \(i)"
          }
        }
      }
      for (i, f) in scoped.enumerated() { #expect(try f.get() == "timed out \(i)") }
    }
  }

  // MARK: gather

  @Test(arguments: backends, stacks)
  func gatherKeepsArgumentOrder(_ backend: EventLoop.Backend, _ stack: FiberStack) throws {
    let loop = try makeLoop(backend, clock: .manual)
    let (x, y, z) = try loop.runFiberUntilComplete(on: stack) {
      let a = loop.spawnFiber(stack: stack) { try sleep(for: .milliseconds(30)); return 1 }
      let b = loop.spawnFiber(stack: stack) { try sleep(for: .milliseconds(10)); return "two" }
      // Private whatever `stack` is: on `.shared`, a gather of both kinds.
      let c = loop.spawnFiber(stack: .private) { try sleep(for: .milliseconds(20)); return 3.0 }
      return try gather(a, b, c)
    }
    #expect(x == 1 && y == "two" && z == 3.0)
  }

  @Test(arguments: backends, stacks)
  func gatherThrowsTheFirstFailureByPositionAfterCancellingTheRest(
    _ backend: EventLoop.Backend, _ stack: FiberStack
  ) throws {
    let loop = try makeLoop(backend, clock: .manual)
    try loop.runFiberUntilComplete(on: stack) {
      var slowUnwound = false
      let start = loop.now
      let slow = loop.spawnFiber(stack: stack) { () throws -> Int in
        defer { slowUnwound = true }
        try sleep(for: .seconds(10))
        return 0
      }
      let late = loop.spawnFiber(stack: stack) { () throws -> Int in try sleep(for: .seconds(5)); throw Boom(code: 2) }
      let early = loop.spawnFiber(stack: stack) { () throws -> Int in try sleep(for: .milliseconds(1)); throw Boom(code: 1) }
      let fine = loop.spawnFiber(stack: stack) { 4 }
      // `late` (position 1) failed after `early` (2): by position, it wins
      // only if it failed on its own; here `early`'s failure cancels it first.
      #expect(throws: Boom(code: 1)) { try gather(slow, late, early, fine) }
      #expect(slowUnwound)
      #expect(slow.isDone && late.isDone)
      #expect(loop.now - start == .milliseconds(1))  // the rest cancelled at once

      // Both failed on their own before gather looked: position decides.
      let p0 = loop.spawnFiber(stack: stack) { () throws -> Int in throw Boom(code: 10) }
      let p1 = loop.spawnFiber(stack: stack) { () throws -> Int in throw Boom(code: 11) }
      try sleep(for: .zero)
      #expect(throws: Boom(code: 10)) { try gather(p0, p1) }
    }
  }

  @Test(arguments: backends, stacks)
  func gatherInterruptedCancelsAndFinishesAll(_ backend: EventLoop.Backend, _ stack: FiberStack) throws {
    let loop = try makeLoop(backend, clock: .manual)
    try loop.runFiberUntilComplete(on: stack) {
      var unwound = 0
      let a = loop.spawnFiber(stack: stack) { defer { unwound += 1 }; try sleep(for: .seconds(10)) }
      let b = loop.spawnFiber(stack: stack) { defer { unwound += 1 }; try sleep(for: .seconds(10)) }
      #expect(throws: TinyAsyncError.timedOut) {
        try withTimeout(.milliseconds(5)) { try gather(a, b) }
      }
      #expect(unwound == 2)
      #expect(a.isDone && b.isDone)

      var unwound2 = 0
      let c = loop.spawnFiber(stack: stack) { defer { unwound2 += 1 }; try sleep(for: .seconds(10)) }
      let gatherer = loop.spawnFiber(stack: stack) {
        try gather(c, loop.spawnFiber(stack: stack) { defer { unwound2 += 1 }; try sleep(for: .seconds(10)) })
      }
      try sleep(for: .milliseconds(2))
      gatherer.cancel()
      #expect(throws: TinyAsyncError.cancelled) { try gatherer.get() }
      #expect(unwound2 == 2)
      #expect(c.isDone)
    }
  }

  @Test(arguments: backends, stacks)
  func gatherOfFinishedFibersAnswersAtOnce(_ backend: EventLoop.Backend, _ stack: FiberStack) throws {
    let loop = try makeLoop(backend, clock: .manual)
    try loop.runFiberUntilComplete(on: stack) {
      let a = loop.spawnFiber(stack: stack) { 1 }
      let b = loop.spawnFiber(stack: stack) { 2 }
      _ = try a.get()
      _ = try b.get()
      let (x, y) = try gather(a, b)
      #expect(x == 1 && y == 2)
    }
  }

  @Test(arguments: backends, stacks)
  func gatherOverAnArrayKeepsItsOrderAndItsRules(_ backend: EventLoop.Backend, _ stack: FiberStack) throws {
    let loop = try makeLoop(backend, clock: .manual)
    try loop.runFiberUntilComplete(on: stack) { () throws in
      let fibers = (0..<10).map { i in
        loop.spawnFiber(stack: stack) { () throws -> Int in try sleep(for: .milliseconds(10 - i)); return i * i }
      }
      #expect(try gather(fibers) == (0..<10).map { $0 * $0 })
      #expect(try gather([FiberHandle<Int>]()) == [])

      var unwound = 0
      let failing = (0..<4).map { i in
        loop.spawnFiber(stack: stack) { () throws -> Int in
          defer { unwound += 1 }
          try sleep(for: i == 2 ? .milliseconds(1) : .seconds(10))
          if i == 2 { throw Boom(code: 2) }
          return i
        }
      }
      #expect(throws: Boom(code: 2)) { try gather(failing) }
      #expect(unwound == 4)
      #expect(failing.allSatisfy { $0.isDone })
    }
    // The async form over fibers.
    let values = try loop.runUntilComplete { () async throws -> [String] in
      let fibers = ["a", "b", "c"].map { s in loop.spawnFiber(stack: stack) { () throws -> String in try sleep(for: .milliseconds(1)); return s } }
      return try await gather(fibers)
    }
    #expect(values == ["a", "b", "c"])
  }

  @Test(arguments: backends, stacks)
  func asyncGatherOfFibersCancelsTheRestOnFailure(_ backend: EventLoop.Backend, _ stack: FiberStack) throws {
    let loop = try makeLoop(backend, clock: .manual)
    let error = try loop.runUntilComplete { () async throws -> Boom? in
      var unwound = false
      defer { #expect(unwound) }
      let slow = loop.spawnFiber(stack: stack) { () throws -> Int in defer { unwound = true }; try sleep(for: .seconds(10)); return 1 }
      let bad = loop.spawnFiber(stack: stack) { () throws -> Int in try sleep(for: .milliseconds(1)); throw Boom(code: 5) }
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

  @Test(arguments: backends, stacks)
  func fibersSuspendedInsideAccessesDoNotBreakEachOther(_ backend: EventLoop.Backend, _ stack: FiberStack) throws {
    let loop = try makeLoop(backend, clock: .manual)
    let shared = FiberShared()
    try loop.runFiberUntilComplete {
      // Each fiber holds a modify access to the same class property (checked
      // at run time) across a sleep, overlapping with the others'. Without
      // the exclusivity swap at each switch, the second would stop the
      // program with "Simultaneous accesses". On the shared stack each
      // access record is on the stack that is copied out.
      let inouts = (0..<4).map { i in
        loop.spawnFiber(stack: stack) { try bumpAfterSleep(&shared.counter, .milliseconds(1 + i)) }
      }
      let dicts = (0..<4).map { i in
        loop.spawnFiber(stack: stack) {
          try bumpAfterSleep(&shared.dict[i % 2 == 0 ? "a" : "b", default: 0], .milliseconds(2 + i))
        }
      }
      let compound = (0..<4).map { i in
        loop.spawnFiber(stack: stack) { shared.dict["a", default: 0] += try oneAfterSleep(.milliseconds(1 + i)) }
      }
      let mixed = (0..<2).map { i in  // one of each kind among them
        loop.spawnFiber(stack: i == 0 ? .private : .shared) {
          try bumpAfterSleep(&shared.dict["b", default: 0], .milliseconds(1 + i))
        }
      }
      for f in inouts + dicts + compound + mixed { try f.get() }
    }
    #expect(shared.counter == 4)
    #expect(shared.dict == ["a": 6, "b": 2 + 2])  // two from `dicts`, two from `mixed`
  }

  @Test func aConflictInsideOneFiberIsStillCaught() async throws {
    // The swap hides a parked fiber's accesses from the others, not a
    // fiber's own: overlapping accesses within one fiber still stop it.
    let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
      let loop = try EventLoop(backend: .epoll)
      let shared = FiberShared()
      try loop.runFiberUntilComplete {
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

  @Test(arguments: backends, stacks)
  func tenThousandFibersSleepConcurrently(_ backend: EventLoop.Backend, _ stack: FiberStack) throws {
    let loop = try makeLoop(backend, clock: .manual)
    let count = 10_000
    let start = loop.now
    let (woke, total) = try loop.runFiberUntilComplete { () throws -> (Int, Int) in
      var woke = 0
      let fibers = (0..<count).map { i in
        loop.spawnFiber(stack: stack) { () throws -> Int in
          try sleep(for: .milliseconds(50))
          woke += 1
          return i
        }
      }
      var total = 0
      for f in fibers { total += try f.get() }
      return (woke, total)
    }
    #expect(woke == count)
    #expect(total == count * (count - 1) / 2)
    // At once, not one after the other: all 50 ms sleeps end together.
    #expect(loop.now - start == .milliseconds(50), "10,000 sleepers of 50 ms took \(loop.now - start)")
  }

  /// Shared stacks only: parked after a sleep, a hundred thousand private
  /// ones would keep about half a gigabyte resident, shared ones about
  /// 2 KiB each.
  @Test(arguments: backends)
  func aHundredThousandSharedFibersSleepAtOnce(_ backend: EventLoop.Backend) throws {
    let loop = try makeLoop(backend, clock: .manual)
    let count = 100_000
    let start = loop.now
    let (woke, total) = try loop.runFiberUntilComplete { () throws -> (Int, Int) in
      var woke = 0
      let fibers = (0..<count).map { i in
        loop.spawnFiber(stack: .shared) { () throws -> Int in
          try sleep(for: .milliseconds(i % 50))
          woke += 1
          return i
        }
      }
      var total = 0
      for f in fibers { total += try f.get() }
      return (woke, total)
    }
    #expect(woke == count)
    #expect(total == count * (count - 1) / 2)
    #expect(loop.now - start == .milliseconds(49))
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
      try loop.runUntilIdle()
    }
    let text = String(decoding: result?.standardErrorContent ?? [], as: UTF8.self)
    #expect(text.contains("sleep(for:) was called outside a fiber"), "\(text)")
  }

  @Test func futureGetOutsideAFiberStops() async {
    let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
      let loop = try EventLoop()
      loop.callSoon { _ = try? Future<Int>(on: loop).get() }
      try loop.runUntilIdle()
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
    #expect(output.contains("fiber 'careless' (FiberHandle<Int>) failed and its error was never retrieved: Lost()"), "\(output)")
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
