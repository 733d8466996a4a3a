import Glibc
import Testing
@testable import TinyAsync

struct Oops: Error, Equatable { let n: Int }

/// Each public operation of the async front, its failures, cancellation
/// and timeouts.
@Suite("Async front: futures, tasks, gather, timeouts, cancellation")
struct AsyncOperationTests {
  static let backends: [EventLoop.Backend] = [.epoll, .ioUring]

  @Test(arguments: backends)
  func aFutureCompletesOnceAndWakesItsWaitersInOrder(_ backend: EventLoop.Backend) throws {
    let loop = try makeLoop(backend, clock: .manual)
    let log = try loop.runUntilComplete { () async throws -> [String] in
      var log: [String] = []
      let f = Future<Int>()
      #expect(!f.isDone)
      let waiters = (1...3).map { i in
        loop.spawn { () async throws -> Int in
          let v = try await f.value
          log.append("waiter \(i) got \(v)")
          return v
        }
      }
      try await sleep(for: .zero)  // let all three park
      #expect(f.succeed(7))
      #expect(!f.succeed(8))  // once only
      #expect(!f.fail(Oops(n: 1)))
      #expect(!f.cancel())
      #expect(f.isDone && !f.isCancelled)
      for w in waiters { #expect(try await w.value == 7) }
      return log
    }
    #expect(log == ["waiter 1 got 7", "waiter 2 got 7", "waiter 3 got 7"])
  }

  @Test(arguments: backends)
  func aFailedOrCancelledFutureThrows(_ backend: EventLoop.Backend) throws {
    let loop = try makeLoop(backend, clock: .manual)
    try loop.runUntilComplete {
      let failed = Future<Int>()
      loop.callLater(.milliseconds(1)) { failed.fail(Oops(n: 3)) }
      await #expect(throws: Oops(n: 3)) { try await failed.value }
      let cancelled = Future<Int>()
      loop.callSoon { cancelled.cancel() }
      await #expect(throws: TinyAsyncError.cancelled) { try await cancelled.value }
      #expect(cancelled.isCancelled)
    }
  }

  @Test(arguments: backends)
  func cancellingTheWaiterLeavesTheFutureAlone(_ backend: EventLoop.Backend) throws {
    let loop = try makeLoop(backend, clock: .manual)
    try loop.runUntilComplete {
      let f = Future<Int>()
      let waiter = loop.spawn { try await f.value }
      try await sleep(for: .zero)
      waiter.cancel()
      await #expect(throws: TinyAsyncError.cancelled) { try await waiter.value }
      #expect(!f.isDone)  // the future is not the waiter's to cancel
      f.succeed(1)
      #expect(try await f.value == 1)
    }
  }

  @Test(arguments: backends)
  func aTimeoutOnAFutureThrowsTimedOutAndInnerScopesNest(_ backend: EventLoop.Backend) throws {
    let loop = try makeLoop(backend, clock: .manual)
    let (outer, inner) = try loop.runUntilComplete { () async throws -> (Bool, Bool) in
      let never = Future<Int>()
      var innerFired = false
      var outerFired = false
      do {
        _ = try await withTimeout(.milliseconds(5)) { try await never.value }
      } catch TinyAsyncError.timedOut {
        innerFired = true
      }
      let start = loop.now
      // The outer scope's deadline applies inside a longer inner one.
      do {
        try await withTimeout(.milliseconds(5)) {
          try await withTimeout(.seconds(10)) { try await sleep(for: .seconds(10)) }
        }
      } catch TinyAsyncError.timedOut {
        outerFired = true
      }
      #expect(loop.now - start == .milliseconds(5))
      // A body that finishes in time returns its value.
      let v = try await withTimeout(.seconds(10)) { () async throws -> Int in
        try await sleep(for: .milliseconds(1))
        return 5
      }
      #expect(v == 5)
      return (outerFired, innerFired)
    }
    #expect(outer && inner)
  }

  @Test(arguments: backends)
  func aTimeoutCoversChildTasksButNotSpawnedOnes(_ backend: EventLoop.Backend) throws {
    let loop = try makeLoop(backend, clock: .manual)
    try loop.runUntilComplete {
      let spawned = try await withTimeout(.milliseconds(5)) { () async throws -> TaskHandle<Int> in
        let t = loop.spawn { try await sleep(for: .milliseconds(20)); return 9 }
        async let child: Void = sleep(for: .seconds(10))
        var caught: TinyAsyncError?
        do { try await child } catch let e as TinyAsyncError { caught = e }
        #expect(caught == .timedOut)
        return t
      }
      #expect(try await spawned.value == 9)  // outlived the scope
    }
  }

  /// Every way a task on the loop can be cancelled wakes the wait it is
  /// parked in: from another thread (the handler hops to the loop), from
  /// the loop through a handle (an async let child with it), a plain Swift
  /// task, a flag set between two waits, runUntilComplete's main task.
  @Test(arguments: backends)
  func cancellationReachesTheParkedWaitFromEveryDirection(_ backend: EventLoop.Backend) throws {
    final class TaskBox: @unchecked Sendable { var task: UnsafeCurrentTask? }
    let loop = try makeLoop(backend)
    try loop.runUntilComplete {
      // From another thread, while the spawned task is parked in a sleep.
      let box = TaskBox()
      let parked = loop.spawn { () async throws -> Int in
        withUnsafeCurrentTask { box.task = $0 }
        try await sleep(for: .seconds(10))
        return 1
      }
      try await sleep(for: .milliseconds(5))
      let thread = startThread { box.task!.cancel() }
      await #expect(throws: TinyAsyncError.cancelled) { try await parked.value }
      joinThread(thread)

      // From the loop thread, through the handle; the task's async let
      // child (its waits have their own handler) is cancelled with it.
      let childSaw = SharedLog<TinyAsyncError>()
      let parent = loop.spawn { () async throws -> Int in
        async let child: Void = {
          do { try await sleep(for: .seconds(10)) } catch let e as TinyAsyncError { childSaw.append(e) }
        }()
        try await sleep(for: .seconds(10))
        try await child
        return 2
      }
      try await sleep(for: .milliseconds(5))
      parent.cancel()
      await #expect(throws: TinyAsyncError.cancelled) { try await parent.value }
      #expect(childSaw.all == [.cancelled])

      // A plain Swift task with the loop as its executor preference.
      let plain = Task(executorPreference: loop) { () async throws -> Int in
        try await sleep(for: .seconds(10))
        return 3
      }
      try await sleep(for: .milliseconds(5))
      plain.cancel()
      await #expect(throws: TinyAsyncError.cancelled) { try await plain.value }

      // A task cancelled after one wait and before the next: the next throws,
      // and the one after it too (the flag stays set).
      let twice = loop.spawn { () async throws -> Int in
        try await sleep(for: .milliseconds(1))
        withUnsafeCurrentTask { $0?.cancel() }
        var throwsSeen = 0
        for _ in 0..<2 {
          do { try await sleep(for: .seconds(10)) } catch TinyAsyncError.cancelled { throwsSeen += 1 }
        }
        return throwsSeen
      }
      #expect(try await twice.value == 2)
    }
    // The main task itself, parked, cancelled from another thread.
    let box = TaskBox()
    let loop2 = try makeLoop(backend)
    let caught = try loop2.runUntilComplete { () async -> TinyAsyncError? in
      withUnsafeCurrentTask { box.task = $0 }
      let thread = startThread {
        usleep(5000)
        box.task!.cancel()
      }
      defer { joinThread(thread) }
      do {
        try await sleep(for: .seconds(10))
        return nil
      } catch let e as TinyAsyncError {
        return e
      } catch {
        return nil
      }
    }
    #expect(caught == .cancelled)
  }

  @Test(arguments: backends)
  func swiftTaskCancellationCancelsTheLoopWait(_ backend: EventLoop.Backend) throws {
    let loop = try makeLoop(backend, clock: .manual)
    try loop.runUntilComplete {
      // A Swift child task, cancelled by its group.
      try await withThrowingTaskGroup(of: Void.self) { group in
        group.addTask { try await sleep(for: .seconds(10)) }
        try await sleep(for: .zero)
        group.cancelAll()
        await #expect(throws: TinyAsyncError.cancelled) { try await group.next() }
      }
      // A task cancelled before it waits throws at its first wait.
      let t = loop.spawn { () async throws -> Int in
        withUnsafeCurrentTask { $0?.cancel() }
        try await sleep(for: .seconds(10))
        return 1
      }
      await #expect(throws: TinyAsyncError.cancelled) { try await t.value }
      #expect(t.isDone)
    }
  }

  /// Cancellation reaches the task it was meant for and no other: a task
  /// group's child cancelled while its parent also waits leaves the parent's
  /// wait alone (and the parent's own cancellation still reaches it); a plain
  /// task started inside a spawned one is cancelled alone, also once the
  /// spawned task that started it is done.
  @Test(arguments: backends)
  func aChildTasksCancellationStaysWithTheChild(_ backend: EventLoop.Backend) throws {
    let loop = try makeLoop(backend)
    try loop.runUntilComplete {
      let parent = loop.spawn { () async throws -> [String] in
        var seen: [String] = []
        try await withThrowingTaskGroup(of: String.self) { group in
          group.addTask {
            do {
              try await sleep(for: .seconds(10))
              return "child slept"
            } catch TinyAsyncError.cancelled {
              return "child cancelled"
            }
          }
          try await sleep(for: .milliseconds(5))  // the parent waits beside it
          group.cancelAll()
          seen.append(try await group.next()!)
          try await sleep(for: .milliseconds(1))  // the parent is not cancelled
          seen.append("parent slept")
        }
        // The parent's own cancellation still reaches its parked wait.
        withUnsafeCurrentTask { $0?.cancel() }
        do { try await sleep(for: .seconds(10)) } catch TinyAsyncError.cancelled { seen.append("parent cancelled") }
        return seen
      }
      #expect(try await parent.value == ["child cancelled", "parent slept", "parent cancelled"])

      // A plain task started inside a spawned one, cancelled while both wait.
      let outer = loop.spawn { () async throws -> (String, String) in
        let inner = Task(executorPreference: loop) { () async -> String in
          do {
            try await sleep(for: .seconds(10))
            return "inner slept"
          } catch {
            return Task.isCancelled ? "inner cancelled" : "inner failed"
          }
        }
        async let outerWait: Void = sleep(for: .milliseconds(20))
        try await sleep(for: .milliseconds(5))
        inner.cancel()
        let innerSaw = await inner.value
        try await outerWait
        return (innerSaw, "outer slept")
      }
      let (innerSaw, outerSaw) = try await outer.value
      #expect(innerSaw == "inner cancelled")
      #expect(outerSaw == "outer slept")

      // A plain task that outlives the spawned task that started it.
      let started = Future<Task<String, Never>>(on: loop)
      let starter = loop.spawn { () async throws -> Int in
        started.succeed(Task(executorPreference: loop) { () async -> String in
          do {
            try await sleep(for: .seconds(10))
            return "slept"
          } catch {
            return Task.isCancelled ? "cancelled" : "failed"
          }
        })
        return 1
      }
      #expect(try await starter.value == 1)
      let orphan = try await started.value
      try await sleep(for: .milliseconds(5))
      orphan.cancel()
      #expect(await orphan.value == "cancelled")
    }
  }

  @Test(arguments: backends)
  func gatherThrowsTheFirstFailureByPositionAfterCancellingTheRest(_ backend: EventLoop.Backend) throws {
    let loop = try makeLoop(backend, clock: .manual)
    try loop.runUntilComplete {
      var finished: [String] = []
      let slow = loop.spawn { () async throws -> Int in
        defer { finished.append("slow") }
        try await sleep(for: .seconds(10))
        return 1
      }
      let lateFailure = loop.spawn { () async throws -> Int in
        // Seconds, not milliseconds, after the 1 ms failure: on the real
        // clock, two timers a few ms apart can come due in one iteration.
        try await sleep(for: .seconds(5))
        throw Oops(n: 1)
      }
      let earlyFailure = loop.spawn { () async throws -> String in
        try await sleep(for: .milliseconds(1))
        throw Oops(n: 2)
      }
      // The first to fail is the third; the slow one is then cancelled and
      // the second, still sleeping, too: Oops(2) is the only real failure.
      await #expect(throws: Oops(n: 2)) { try await gather(slow, lateFailure, earlyFailure) }
      #expect(slow.isDone && lateFailure.isDone && earlyFailure.isDone)
      #expect(finished == ["slow"])
    }
  }

  @Test(arguments: backends)
  func gatherOfAnArrayKeepsItsOrderAndThrowsTheFirstFailureByPosition(_ backend: EventLoop.Backend) throws {
    let loop = try makeLoop(backend, clock: .manual)
    try loop.runUntilComplete {
      // Finishing in reverse order, one already done before gather looks.
      let tasks = (0..<5).map { i in
        loop.spawn { () async throws -> Int in
          if i > 0 { try await sleep(for: .milliseconds(5 - i)) }
          return i * 10
        }
      }
      try await sleep(for: .zero)
      let values = try await gather(tasks)
      #expect(values == [0, 10, 20, 30, 40])
      let none = try await gather([TaskHandle<Int>]())
      #expect(none.isEmpty)

      var finished: [String] = []
      let failing = [
        loop.spawn { () async throws -> Int in
          defer { finished.append("slow") }
          try await sleep(for: .seconds(10))
          return 1
        },
        loop.spawn { () async throws -> Int in
          try await sleep(for: .seconds(5))  // cancelled before it fails
          throw Oops(n: 1)
        },
        loop.spawn { () async throws -> Int in
          try await sleep(for: .milliseconds(1))
          throw Oops(n: 2)
        },
      ]
      await #expect(throws: Oops(n: 2)) { try await gather(failing) }
      #expect(failing.allSatisfy { $0.isDone })
      #expect(finished == ["slow"])

      let sleepy = (0..<3).map { _ in loop.spawn { try await sleep(for: .seconds(10)) } }
      await #expect(throws: TinyAsyncError.timedOut) {
        try await withTimeout(.milliseconds(2)) { try await gather(sleepy) }
      }
      #expect(sleepy.allSatisfy { $0.isDone })
    }
  }

  @Test(arguments: backends)
  func gatherOfFinishedTasksAndTheTaskHandleAPI(_ backend: EventLoop.Backend) throws {
    let loop = try makeLoop(backend, clock: .manual)
    try loop.runUntilComplete {
      let a = loop.spawn(name: "a") { 1 }
      let b = loop.spawn { "b" }
      #expect(a.name == "a")
      #expect(b.name.hasPrefix("task-"))
      #expect(!a.isDone)
      try await sleep(for: .zero)
      try await sleep(for: .zero)
      #expect(a.isDone && b.isDone)
      let (x, y) = try await gather(a, b)
      #expect(x == 1 && y == "b")
    }
  }

  @Test(arguments: backends)
  func runUntilCompleteFinishesWhatTheMainTaskLeftRunning(_ backend: EventLoop.Backend) throws {
    let loop = try makeLoop(backend, clock: .manual)
    let log = SharedLog<String>()
    let leftover = try loop.runUntilComplete { () async -> LoopThreadBox<TaskHandle<Void>> in
      LoopThreadBox(loop.spawn {
        defer { log.append("unwound") }
        try await sleep(for: .seconds(10))
      })
    }
    #expect(log.all == ["unwound"])  // cancelled and run to its end, not dropped
    #expect(leftover.value.isDone)
  }

  @Test func runMakesALoopAndCurrentNamesIt() throws {
    #expect(EventLoop.current == nil)
    let (same, backend) = try EventLoop.run(backend: .epoll) { () async -> (Bool, EventLoop.Backend?) in
      let loop = EventLoop.current
      try? await sleep(for: .zero)
      return (loop === EventLoop.current, loop?.backend)
    }
    #expect(same && backend == .epoll)
    #expect(EventLoop.current == nil)
  }
}
