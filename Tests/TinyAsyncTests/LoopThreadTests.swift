import Glibc
import Testing
@testable import TinyAsync

/// Every job of the async front runs on the loop's thread, and an await
/// costs exactly one trip through the loop's job queue: no hop to another
/// executor, no extra hop on the way back.
@Suite("Async front: every job on the loop thread, one hop per resume")
struct LoopThreadTests {
  static let backends: [EventLoop.Backend] = [.epoll, .ioUring]

  @Test(arguments: backends)
  func eachSleepResumesWithOneJobOnTheLoopThread(_ backend: EventLoop.Backend) throws {
    let loop = try makeLoop(backend)
    let me = pthread_self()
    let (hops, offThread) = try loop.runUntilComplete { () async throws -> (Int, Bool) in
      var offThread = false
      let before = loop.jobsEnqueued
      for _ in 0..<100 {
        try await sleep(for: .zero)
        if pthread_equal(pthread_self(), me) == 0 { offThread = true }
      }
      return (loop.jobsEnqueued - before, offThread)
    }
    #expect(!offThread)
    #expect(hops == 100)  // one job per resumed await, none more
    #expect(loop.jobsFromOtherThreads == 0)
  }

  @Test(arguments: backends)
  func futuresSpawnsGatherAndChildTasksStayOnTheLoopThread(_ backend: EventLoop.Backend) throws {
    let loop = try makeLoop(backend)
    let me = pthread_self()
    let seen = try loop.runUntilComplete { () async throws -> [Bool] in
      var seen: [Bool] = []
      func here() -> Bool { pthread_equal(pthread_self(), me) != 0 }
      // A future completed by a loop callback: one job to resume.
      let before = loop.jobsEnqueued
      let f = Future<Int>()
      loop.callSoon { f.succeed(1) }
      _ = try await f.value
      seen.append(here())
      seen.append(loop.jobsEnqueued - before == 1)
      // Spawned tasks, and gather over them.
      let a = loop.spawn { try await sleep(for: .milliseconds(2)); return here() }
      let b = loop.spawn { try await sleep(for: .zero); return here() }
      let (x, y) = try await gather(a, b)
      seen += [x, y, here()]
      // Structured children (async let, task groups) inherit the loop as
      // their task executor.
      async let child: Bool = { try await sleep(for: .zero); return here() }()
      seen.append(try await child)
      let group = try await withThrowingTaskGroup(of: Bool.self) { group in
        for _ in 0..<4 { group.addTask { try await sleep(for: .zero); return here() } }
        var all = true
        for try await ok in group { all = all && ok }
        return all
      }
      seen.append(group)
      return seen
    }
    #expect(seen.allSatisfy { $0 }, "\(seen)")
    #expect(loop.jobsFromOtherThreads == 0)
  }

  @Test(arguments: backends)
  func aFutureCompletedFromAnotherThreadResumesOnTheLoopThread(_ backend: EventLoop.Backend) throws {
    let loop = try makeLoop(backend)
    let me = pthread_self()
    let (value, here) = try loop.runUntilComplete { () async throws -> (Int, Bool) in
      let f = Future<Int>()
      let completer = f.threadSafeCompleter
      let worker = startThread {
        usleep(5_000)
        completer.succeed(42)  // the seeds' fake_io
      }
      defer { joinThread(worker) }
      let v = try await f.value
      return (v, pthread_equal(pthread_self(), me) != 0)
    }
    #expect(value == 42 && here)
    #expect(loop.jobsFromOtherThreads == 0)
  }

  @Test(arguments: backends)
  func aJobResumedFromAnotherThreadTakesTheThreadSafePath(_ backend: EventLoop.Backend) throws {
    let loop = try makeLoop(backend)
    let me = pthread_self()
    let here = try loop.runUntilComplete { () async -> Bool in
      // A continuation resumed on a plain thread enqueues the task's next
      // job from there: it must still run on the loop's thread.
      await withUnsafeContinuation { (c: UnsafeContinuation<Void, Never>) in
        let t = startThread {
          usleep(5_000)  // most likely after the task has parked
          c.resume()
        }
        pthread_detach(t)
      }
      return pthread_equal(pthread_self(), me) != 0
    }
    #expect(here)
    // One job, unless the thread resumed before the task had parked (then
    // the task just goes on, with no job at all).
    #expect(loop.jobsFromOtherThreads <= 1)
  }
}
