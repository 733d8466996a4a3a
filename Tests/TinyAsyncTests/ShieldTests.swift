import Testing
@testable import TinyAsync

/// Clean-up after cancellation (a shield) and timeouts that cancel what they
/// wait for (asyncio's `wait_for`), on both fronts.
@Suite("Shields and timeouts that cancel what they wait for")
struct ShieldTests {
  static let backends: [EventLoop.Backend] = [.epoll, .ioUring]

  final class Log { var entries: [String] = [] }

  /// The clean-up pattern: a cancelled task says goodbye on its socket and
  /// waits a little, in a shield. Without it both would throw `.cancelled`
  /// at once (Swift's cancellation is sticky); after it, the next wait does.
  @Test(arguments: backends)
  func aCancelledTaskCleansUpInAShield(_ backend: EventLoop.Backend) throws {
    let loop = try makeLoop(backend)
    let log = LoopThreadBox(Log())
    try loop.runUntilComplete { () async throws in
      let listener = try TCPListener(host: "127.0.0.1", port: 0)
      let server = loop.spawn { () async throws -> [UInt8] in
        let connection = try await listener.accept()
        var got: [UInt8] = []
        while true {
          let chunk = try await connection.read()
          if chunk.isEmpty { return got }
          got += chunk
        }
      }
      let client = loop.spawn { () async throws in
        let connection = try await TCPConnection.connect(host: "127.0.0.1", port: listener.port)
        do {
          try await sleep(for: .seconds(60))
        } catch TinyAsyncError.cancelled {
          log.value.entries.append("cancelled")
          try await withShield(timeout: .seconds(10)) {
            try await connection.write("goodbye\n")
            try await sleep(for: .milliseconds(5))
            log.value.entries.append("slept")
          }
          // The cancellation was kept: the first wait after the shield meets it.
          do {
            try await sleep(for: .milliseconds(1))
            log.value.entries.append("not cancelled after the shield")
          } catch TinyAsyncError.cancelled {
            log.value.entries.append("cancelled again")
          }
          connection.close()
          throw TinyAsyncError.cancelled
        }
      }
      try await sleep(for: .milliseconds(20))
      client.cancel()
      await #expect(throws: TinyAsyncError.cancelled) { try await client.value }
      #expect(try await server.value == Array("goodbye\n".utf8))
      listener.close()
    }
    #expect(log.value.entries == ["cancelled", "slept", "cancelled again"])
  }

  /// A shield holds off the deadlines around it (kept for after it) but its
  /// own, and those of scopes inside it, still apply.
  @Test(arguments: backends)
  func aShieldHoldsOffOuterDeadlinesButNotItsOwn(_ backend: EventLoop.Backend) throws {
    let loop = try makeLoop(backend, clock: .manual)
    let log = LoopThreadBox(Log())
    try loop.runUntilComplete { () async throws in
      do {
        try await withTimeout(.milliseconds(10)) {
          try await withShield {
            try await sleep(for: .milliseconds(50))  // past the outer deadline
            log.value.entries.append("shielded sleep done")
            do {
              try await withTimeout(.milliseconds(5)) { try await sleep(for: .seconds(1)) }
            } catch TinyAsyncError.timedOut {
              log.value.entries.append("inner timeout")
            }
          }
          try await sleep(for: .milliseconds(1))
          log.value.entries.append("outer deadline lost")
        }
      } catch TinyAsyncError.timedOut {
        log.value.entries.append("outer timeout after the shield")
      }
      do {
        try await withShield(timeout: .milliseconds(5)) { try await sleep(for: .seconds(1)) }
      } catch TinyAsyncError.timedOut {
        log.value.entries.append("shield's own timeout")
      }
    }
    #expect(log.value.entries == [
      "shielded sleep done", "inner timeout", "outer timeout after the shield", "shield's own timeout",
    ])
  }

  /// `value(timeout:)` cancels the task on expiry and waits until it has
  /// finished: its clean-up ran before the timeout is thrown.
  @Test(arguments: backends)
  func valueWithATimeoutCancelsAndAwaitsTheTask(_ backend: EventLoop.Backend) throws {
    let loop = try makeLoop(backend, clock: .manual)
    let log = LoopThreadBox(Log())
    try loop.runUntilComplete { () async throws in
      let slow = loop.spawn { () async throws -> Int in
        do {
          try await sleep(for: .seconds(60))
        } catch {
          try await withShield { try await sleep(for: .milliseconds(30)) }
          log.value.entries.append("slow cleaned up")
          throw error
        }
        return 1
      }
      await #expect(throws: TinyAsyncError.timedOut) { try await slow.value(timeout: .milliseconds(10)) }
      log.value.entries.append("timed out")
      #expect(slow.isDone)
      await #expect(throws: TinyAsyncError.cancelled) { try await slow.value }

      let quick = loop.spawn { () async throws -> Int in
        try await sleep(for: .milliseconds(1))
        return 2
      }
      #expect(try await quick.value(timeout: .seconds(1)) == 2)

      // The plain form keeps Swift's meaning: the task goes on.
      let other = loop.spawn { () async throws -> Int in
        try await sleep(for: .milliseconds(20))
        return 3
      }
      await #expect(throws: TinyAsyncError.timedOut) {
        try await withTimeout(.milliseconds(5)) { try await other.value }
      }
      #expect(!other.isDone)
      #expect(try await other.value == 3)
    }
    #expect(log.value.entries == ["slow cleaned up", "timed out"])
  }

  /// A waiter cancelled inside `value(timeout:)` cancels and awaits the
  /// task it waits for, then throws `.cancelled`.
  @Test(arguments: backends)
  func aCancelledWaiterCancelsWhatItWaitsFor(_ backend: EventLoop.Backend) throws {
    let loop = try makeLoop(backend, clock: .manual)
    let log = LoopThreadBox(Log())
    try loop.runUntilComplete { () async throws in
      let inner = loop.spawn { () async throws -> Int in
        do {
          try await sleep(for: .seconds(60))
        } catch {
          log.value.entries.append(error as? TinyAsyncError == .cancelled ? "inner cancelled" : "inner \(error)")
          throw error
        }
        return 1
      }
      let waiter = loop.spawn { () async throws -> Int in
        try await inner.value(timeout: .seconds(30))
      }
      try await sleep(for: .milliseconds(10))
      waiter.cancel()
      await #expect(throws: TinyAsyncError.cancelled) { try await waiter.value }
      #expect(inner.isDone)
      log.value.entries.append("waiter done")
    }
    #expect(log.value.entries == ["inner cancelled", "waiter done"])
  }

  /// The fiber forms: a shield in a cancelled fiber, and `get(timeout:)` /
  /// `value(timeout:)` cancelling and awaiting the fiber on expiry.
  @Test(arguments: backends)
  func fiberShieldsAndTimeouts(_ backend: EventLoop.Backend) throws {
    let loop = try makeLoop(backend, clock: .manual)
    let log = LoopThreadBox(Log())
    try loop.runFiberUntilComplete { () throws in
      // The expiry at 10 ms cancels the worker inside its shield: the
      // cancellation waits for the shield's end and meets the next sleep.
      // (A fiber's cancellation, as asyncio's, is delivered once; it is not
      // sticky as a Swift task's.)
      let worker = loop.spawnFiber { () throws -> Int in
        try withShield(timeout: .seconds(1)) { try sleep(for: .milliseconds(20)) }
        log.value.entries.append("worker's shielded sleep done")
        do {
          try sleep(for: .milliseconds(1))
        } catch TinyAsyncError.cancelled {
          log.value.entries.append("worker cancelled after the shield")
          throw TinyAsyncError.cancelled
        }
        return 1
      }
      #expect(throws: TinyAsyncError.timedOut) { try worker.get(timeout: .milliseconds(10)) }
      #expect(worker.isDone)
      log.value.entries.append("timed out")

      let quick = loop.spawnFiber { () throws -> Int in
        try sleep(for: .milliseconds(1))
        return 3
      }
      #expect(try quick.get(timeout: .seconds(1)) == 3)

      // A shield in a fiber holds off an outer deadline too.
      do {
        try withTimeout(.milliseconds(5)) {
          try withShield { try sleep(for: .milliseconds(10)) }
          log.value.entries.append("shielded past the deadline")
          try sleep(for: .milliseconds(1))
        }
      } catch TinyAsyncError.timedOut {
        log.value.entries.append("deadline after the shield")
      }
    }
    try loop.runUntilComplete { () async throws in
      let fiber = loop.spawnFiber { () throws -> Int in
        do {
          try sleep(for: .seconds(60))
        } catch {
          log.value.entries.append("async-awaited fiber stopped")
          throw error
        }
        return 4
      }
      await #expect(throws: TinyAsyncError.timedOut) { try await fiber.value(timeout: .milliseconds(5)) }
      #expect(fiber.isDone)
    }
    #expect(log.value.entries == [
      "worker's shielded sleep done", "worker cancelled after the shield", "timed out",
      "shielded past the deadline", "deadline after the shield", "async-awaited fiber stopped",
    ])
  }
}
