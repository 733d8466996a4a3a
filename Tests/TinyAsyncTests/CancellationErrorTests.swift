import Testing
@testable import TinyAsync

/// One cancellation error: `catch TinyAsyncError.cancelled` catches every
/// cancellation path, also a `CancellationError` a body threw.
@Suite("One cancellation error")
struct CancellationErrorTests {
  static let backends: [EventLoop.Backend] = [.epoll, .ioUring]

  final class Log { var entries: [String] = [] }

  @Test(arguments: backends)
  func everyCancellationPathIsTinyAsyncErrorCancelled(_ backend: EventLoop.Backend) throws {
    let loop = try makeLoop(backend, clock: .manual)
    let log = LoopThreadBox(Log())
    try loop.runUntilComplete { () async throws in
      // A wait that is cancelled.
      let sleeper = loop.spawn { try await sleep(for: .seconds(10)) }
      try await sleep(for: .zero)
      sleeper.cancel()
      do { try await sleeper.value } catch TinyAsyncError.cancelled { log.value.entries.append("wait") }

      // Task.checkCancellation() in a spawned task's body.
      let checker = loop.spawn { () async throws -> Int in
        while true {
          try Task.checkCancellation()  // CancellationError
          await Task.yield()
        }
      }
      try await sleep(for: .zero)
      checker.cancel()
      do { _ = try await checker.value } catch TinyAsyncError.cancelled { log.value.entries.append("checkCancellation") }

      // A cancelled gather.
      let gatherer = loop.spawn { () async throws in
        let a = loop.spawn { try await sleep(for: .seconds(10)) }
        let b = loop.spawn { try await sleep(for: .seconds(10)) }
        _ = try await gather(a, b)
      }
      try await sleep(for: .zero)
      gatherer.cancel()
      do { try await gatherer.value } catch TinyAsyncError.cancelled { log.value.entries.append("gather") }

      // A body inside withTimeout / withShield that throws CancellationError.
      do {
        try await withTimeout(.seconds(1)) { throw CancellationError() }
      } catch TinyAsyncError.cancelled { log.value.entries.append("withTimeout") }
      do {
        try await withShield { throw CancellationError() }
      } catch TinyAsyncError.cancelled { log.value.entries.append("withShield") }

      // The typed check, and isCancellation for errors of either kind.
      let typed = loop.spawn { () async throws in
        while true {
          try TinyAsyncError.checkCancellation()
          try await sleep(for: .zero)
        }
      }
      try await sleep(for: .zero)
      typed.cancel()
      do { try await typed.value } catch TinyAsyncError.cancelled { log.value.entries.append("typed check") }
      #expect(CancellationError().isCancellation)
      #expect(TinyAsyncError.cancelled.isCancellation)
      #expect(!TinyAsyncError.timedOut.isCancellation)
    }
    #expect(log.value.entries == ["wait", "checkCancellation", "gather", "withTimeout", "withShield", "typed check"])
  }

  /// The main task's CancellationError leaves `runUntilComplete` as
  /// `.cancelled` too.
  @Test func theMainTaskToo() throws {
    let loop = try makeLoop(.epoll)
    #expect(throws: TinyAsyncError.cancelled) {
      try loop.runUntilComplete { () async throws in throw CancellationError() }
    }
  }
}
