import Glibc
import Synchronization
import Testing
@testable import TinyAsync

/// Runs `body`, stopping the test process with a message if it takes
/// longer than `seconds`: a test of a hang that must not hang fails here
/// instead of stalling the run.
func withWatchdog<R>(seconds: Int = 60, _ body: () throws -> R) rethrows -> R {
  let flag = WatchdogFlag()
  let dog = startThread {
    for _ in 0..<(seconds * 100) {
      if flag.done.load(ordering: .relaxed) { return }
      usleep(10_000)
    }
    let message = "watchdog: still running after \(seconds) s\n"
    _ = message.withCString { write(2, $0, strlen($0)) }
    abort()
  }
  defer {
    flag.done.store(true, ordering: .relaxed)
    joinThread(dog)
  }
  return try body()
}

@Suite("The main task's deadlock and nested runs")
struct DeadlockTests {
  static let backends: [EventLoop.Backend] = [.epoll, .ioUring]

  @Test(arguments: backends)
  func aMainTaskAwaitingAFutureNobodyCompletesThrowsDeadlocked(_ backend: EventLoop.Backend) throws {
    let loop = try makeLoop(backend)
    let seen = LoopThreadBox(SeenError())
    withWatchdog {
      #expect(throws: TinyAsyncError.deadlocked) {
        try loop.runUntilComplete {
          do {
            try await Future<Int>().value
          } catch {
            seen.value.error = error  // its wait is cancelled so that it unwinds
            throw error
          }
        }
      }
    }
    #expect(seen.value.error as? TinyAsyncError == .cancelled)
  }

  @Test func eventLoopRunReportsAnEventNobodySets() {
    withWatchdog {
      do {
        try EventLoop.run {
          let never = Event()
          try await never.wait()
        }
        Issue.record("EventLoop.run returned")
      } catch TinyAsyncError.deadlocked {
        // what asyncio's sibling, cloop_main, reports as -EDEADLK
      } catch {
        Issue.record("threw \(error)")
      }
    }
  }

  @Test func theDeadlockErrorSaysWhatHappened() {
    #expect(TinyAsyncError.deadlocked.description.hasPrefix("deadlocked: the main task waits for something nothing left on the loop can bring"))
    #expect(TinyAsyncError.deadlocked.errno == EDEADLK)
  }

  /// No false report: a task the loop cannot see, waiting elsewhere, will
  /// complete the future (a regression guard: it passed before the check).
  @Test func aFutureATaskCompletesAfterWaitingElsewhereIsNoDeadlock() throws {
    let value = try withWatchdog {
      try EventLoop.run {
        let future = LoopThreadBox(Future<Int>())
        let worker = LoopThreadBox(Future<pthread_t>())
        _ = Task(executorPreference: EventLoop.current!) {
          await withUnsafeContinuation { (away: UnsafeContinuation<Void, Never>) in  // off the loop
            worker.value.succeed(startThread { usleep(20_000); away.resume() })
          }
          future.value.succeed(7)
        }
        let value = try await future.value.value
        joinThread(try await worker.value.value)
        return value
      }
    }
    #expect(value == 7)
  }

  /// Nor when a plain thread will complete it through a completer.
  @Test func aFutureAThreadCompletesIsNoDeadlock() throws {
    let value = try withWatchdog {
      try EventLoop.run {
        let future = Future<Int>()
        let completer = future.threadSafeCompleter
        let worker = startThread {
          usleep(20_000)
          completer.succeed(8)
        }
        defer { joinThread(worker) }
        return try await future.value
      }
    }
    #expect(value == 8)
  }

  /// Nor while a timer can still wake it.
  @Test func aFutureATimerCompletesIsNoDeadlock() throws {
    let loop = try makeLoop(.automatic, clock: .manual)
    let value = try loop.runUntilComplete {
      let future = Future<Int>()
      loop.callLater(.seconds(5)) { future.succeed(9) }
      return try await future.value
    }
    #expect(value == 9)
  }

  @Test func aNestedRunStops() async {
    let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
      try EventLoop.run {
        try EventLoop.run { 1 }
      }
    }
    let text = String(decoding: result?.standardErrorContent ?? [], as: UTF8.self)
    #expect(text.contains("EventLoop.run was called while an EventLoop is running on this thread"))
  }

  @Test func aNestedRunFiberStops() async {
    let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
      let outer = try EventLoop()
      try outer.runFiberUntilComplete {
        let inner = try EventLoop()
        _ = try inner.runFiberUntilComplete { 1 }
      }
    }
    let text = String(decoding: result?.standardErrorContent ?? [], as: UTF8.self)
    #expect(text.contains("EventLoop.runFiberUntilComplete was called while an EventLoop is running on this thread"))
  }
}

final class WatchdogFlag: Sendable {
  let done = Atomic<Bool>(false)
}

/// Where a test body leaves the error it saw.
final class SeenError {
  var error: (any Error)?
}
