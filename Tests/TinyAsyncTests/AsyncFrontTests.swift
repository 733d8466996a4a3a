import Glibc
import Testing
import TinyAsync

/// The thread the code runs on, to check that every step stays on the loop.
func currentThread() -> pthread_t { pthread_self() }

@Suite("Async front: the loop as a Swift executor")
struct AsyncFrontTests {
  /// A task spawned while runUntilComplete cancels the ones left (here: by
  /// a task in its clean-up, as an accept that completed just as its
  /// listener closed does) is cancelled too, instead of keeping the loop
  /// running for ever.
  @Test(.timeLimit(.minutes(1)), arguments: [EventLoop.Backend.epoll, .ioUring])
  func aTaskSpawnedWhileTheLoopFinishesIsCancelledToo(_ backend: EventLoop.Backend) throws {
    let loop = try makeLoop(backend)
    let log = LoopThreadBox(Log())
    try loop.runUntilComplete {
      loop.spawn {
        do {
          try await sleep(for: .seconds(1000))
        } catch {
          log.value.entries.append("cancelled")
          loop.spawn {
            do { try await sleep(for: .seconds(1000)) } catch { log.value.entries.append("late one ended") }
          }
        }
      }
      try await sleep(for: .zero)
    }
    #expect(log.value.entries == ["cancelled", "late one ended"])
    // And the fibers' runner, the same way.
    try loop.runFiberUntilComplete {
      loop.spawnFiber {
        do {
          try sleep(for: .seconds(1000))
        } catch {
          log.value.entries.append("fiber cancelled")
          loop.spawnFiber { try sleep(for: .seconds(1000)) }
        }
      }
      try sleep(for: .zero)
    }
    #expect(log.value.entries.last == "fiber cancelled")
  }

  final class Log { var entries: [String] = [] }

  static let backends: [EventLoop.Backend] = [.epoll, .ioUring]

  @Test(arguments: backends)
  func runUntilCompleteReturnsTheValueOnTheLoopThread(_ backend: EventLoop.Backend) throws {
    let loop = try makeLoop(backend, clock: .manual)
    let me = pthread_self()
    let value = try loop.runUntilComplete {
      #expect(pthread_equal(pthread_self(), me) != 0)
      #expect(EventLoop.current === loop)
      try await sleep(for: .milliseconds(1))
      #expect(pthread_equal(pthread_self(), me) != 0)
      return 42
    }
    #expect(value == 42)
  }

  @Test(arguments: backends)
  func runUntilCompleteRethrows(_ backend: EventLoop.Backend) throws {
    struct Boom: Error {}
    let loop = try makeLoop(backend, clock: .manual)
    #expect(throws: Boom.self) {
      try loop.runUntilComplete { () async throws -> Int in
        try await sleep(for: .zero)
        throw Boom()
      }
    }
  }

  @Test(arguments: backends)
  func sleepersWakeInDeadlineOrder(_ backend: EventLoop.Backend) throws {
    let loop = try makeLoop(backend, clock: .manual)
    let order = try loop.runUntilComplete { () async throws -> [Int] in
      var order: [Int] = []
      let start = loop.now
      let a = loop.spawn { try await sleep(for: .milliseconds(30)); return 3 }
      let b = loop.spawn { try await sleep(for: .milliseconds(10)); return 1 }
      let c = loop.spawn { try await sleep(for: .milliseconds(20)); return 2 }
      // Each finishes in its own time; awaiting in any order works.
      order.append(try await b.value)
      #expect(loop.now - start == .milliseconds(10))
      order.append(try await c.value)
      #expect(loop.now - start == .milliseconds(20))
      order.append(try await a.value)
      #expect(loop.now - start == .milliseconds(30))
      return order
    }
    #expect(order == [1, 2, 3])
  }

  @Test(arguments: backends)
  func futureValueFromACallback(_ backend: EventLoop.Backend) throws {
    let loop = try makeLoop(backend, clock: .manual)
    let v = try loop.runUntilComplete {
      let f = Future<String>()
      loop.callSoon { f.succeed("hi") }
      let first = try await f.value
      let again = try await f.value  // a done future answers at once
      return first + again
    }
    #expect(v == "hihi")
  }

  @Test(arguments: backends)
  func gatherKeepsArgumentOrder(_ backend: EventLoop.Backend) throws {
    let loop = try makeLoop(backend, clock: .manual)
    let start = loop.now
    let (x, y, z) = try loop.runUntilComplete {
      let a = loop.spawn { try await sleep(for: .milliseconds(30)); return 1 }
      let b = loop.spawn { try await sleep(for: .milliseconds(10)); return "two" }
      let c = loop.spawn { try await sleep(for: .milliseconds(20)); return 3.0 }
      return try await gather(a, b, c)
    }
    #expect(x == 1 && y == "two" && z == 3.0)
    #expect(loop.now - start == .milliseconds(30))  // together, as long as the longest
  }

  @Test(arguments: backends)
  func timeoutInterruptsASleep(_ backend: EventLoop.Backend) throws {
    let loop = try makeLoop(backend, clock: .manual)
    let start = loop.now
    let caught = try loop.runUntilComplete { () async throws -> Bool in
      do {
        try await withTimeout(.milliseconds(10)) { try await sleep(for: .seconds(10)) }
        return false
      } catch TinyAsyncError.timedOut {
        return true
      }
    }
    #expect(caught)
    #expect(loop.now - start == .milliseconds(10))
  }

  @Test(arguments: backends)
  func cancelStopsASpawnedTask(_ backend: EventLoop.Backend) throws {
    let loop = try makeLoop(backend, clock: .manual)
    let error = try loop.runUntilComplete { () async throws -> TinyAsyncError? in
      let t = loop.spawn(name: "sleeper") { try await sleep(for: .seconds(10)) }
      try await sleep(for: .milliseconds(1))
      t.cancel()
      do {
        try await t.value
        return nil
      } catch let e as TinyAsyncError {
        #expect(t.name == "sleeper")
        return e
      }
    }
    #expect(error == .cancelled)
  }
}

/// An actor isolated to a loop: its methods run on the loop's thread.
actor LoopCounter {
  let loop: EventLoop
  var count = 0
  nonisolated var unownedExecutor: UnownedSerialExecutor { loop.asUnownedSerialExecutor() }
  init(loop: EventLoop) { self.loop = loop }
  func bump() -> Int {
    loop.preconditionIsolated()
    count += 1
    return count
  }
}

extension AsyncFrontTests {
  @Test(arguments: backends)
  func anActorOnTheLoopRunsOnItsThread(_ backend: EventLoop.Backend) throws {
    let loop = try makeLoop(backend, clock: .manual)
    let me = pthread_self()
    let n = try loop.runUntilComplete {
      let counter = LoopCounter(loop: loop)
      var last = 0
      for _ in 0..<100 {
        last = await counter.bump()
        #expect(pthread_equal(pthread_self(), me) != 0)
        try await sleep(for: .zero)
      }
      return last
    }
    #expect(n == 100)
  }
}
