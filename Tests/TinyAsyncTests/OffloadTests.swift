import Glibc
import Testing
import TinyAsync

/// A gate the jobs block on until the test opens it: a pipe, read by the
/// jobs (a blocking read(2) on a pool thread), written by the test.
final class Gate: @unchecked Sendable {  // the fds are plain values
  let readEnd: Int32
  let writeEnd: Int32

  init() {
    var fds: [Int32] = [0, 0]
    precondition(pipe(&fds) == 0)
    readEnd = fds[0]
    writeEnd = fds[1]
  }

  deinit {
    close(readEnd)
    close(writeEnd)
  }

  /// Blocks the calling thread until `open(_:)` lets it through.
  func pass() {
    var byte: UInt8 = 0
    _ = read(readEnd, &byte, 1)
  }

  /// Lets `count` waiters through.
  func open(_ count: Int = 1) {
    let bytes = [UInt8](repeating: 1, count: count)
    _ = bytes.withUnsafeBytes { write(writeEnd, $0.baseAddress, count) }
  }
}

struct Failure: Error, Equatable {}

@Suite("offload: blocking work on the pool, both fronts")
struct OffloadTests {
  @Test(arguments: [EventLoop.Backend.epoll, .ioUring])
  func valuesComeBackOnTheLoopAndWorkRunsOffIt(_ backend: EventLoop.Backend) throws {
    let loop = try makeLoop(backend)
    let sum = try loop.runUntilComplete {
      let onLoop = loop.isOnLoopThread
      let offLoop = try await offload { pthread_self() }
      #expect(onLoop && loop.isOnLoopThread)
      #expect(pthread_equal(offLoop, pthread_self()) == 0)  // another thread
      // A job that throws: its error comes back as it is.
      await #expect(throws: Failure()) { try await offload { () throws -> Int in throw Failure() } }
      // 10,000 jobs at once from 10,000 tasks.
      let handles = (0..<10_000).map { i in loop.spawn { try await offload { i * 2 } } }
      return try await gather(handles).reduce(0, +)
    }
    #expect(sum == 10_000 * 9_999)
  }

  @Test func aCancelledWaitEndsAtOnceAndTheJobIsDropped() throws {
    let loop = try EventLoop()
    let gate = Gate()
    let ran = SharedLog<String>()
    try loop.runUntilComplete {
      // Four jobs fill the pool (its default size), blocked in the gate.
      let blockers = (0..<4).map { i in
        loop.spawn { try await offload { gate.pass(); ran.append("blocker \(i)") } }
      }
      try await sleep(for: .milliseconds(50))
      // A fifth waits for a thread: cancelled, it never runs.
      let queued = loop.spawn { try await offload { ran.append("queued") } }
      try await sleep(for: .milliseconds(10))
      queued.cancel()
      await #expect(throws: TinyAsyncError.cancelled) { try await queued.value }
      // A running one: the wait ends at once, the job finishes later.
      blockers[0].cancel()
      await #expect(throws: TinyAsyncError.cancelled) { try await blockers[0].value }
      // A timeout is the same.
      await #expect(throws: TinyAsyncError.timedOut) {
        try await withTimeout(.milliseconds(5)) { try await offload { gate.pass() } }
      }
      gate.open(5)
      for blocker in blockers.dropFirst() { try await blocker.value }
      // The pool serves again.
      #expect(try await offload { 42 } == 42)
    }
    // Let the abandoned jobs end (they only touch the log).
    var spins = 0
    while ran.all.filter({ $0.hasPrefix("blocker") }).count < 4 && spins < 5000 {
      usleep(1000)
      spins += 1
    }
    #expect(!ran.all.contains("queued"))
    #expect(ran.all.filter { $0.hasPrefix("blocker") }.count == 4)
  }

  @Test func theFiberFormWaitsInTheFiber() throws {
    let loop = try EventLoop()
    let gate = Gate()
    let got = try loop.runFiberUntilComplete { () throws -> Int in
      let answer = try offload { 6 * 7 }
      #expect(throws: Failure()) { try offload { () throws -> Int in throw Failure() } }
      let blocked = loop.spawnFiber { try offload { gate.pass() } }
      try sleep(for: .milliseconds(20))
      blocked.cancel()
      #expect(throws: TinyAsyncError.cancelled) { try blocked.get() }
      gate.open()
      return answer
    }
    #expect(got == 42)
  }
}
