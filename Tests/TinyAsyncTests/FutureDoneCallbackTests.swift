import Testing
@testable import TinyAsync

/// `Future.onDone` (asyncio's `add_done_callback` / `remove_done_callback`)
/// and `Future.result`.
@Suite("Future done callbacks")
struct FutureDoneCallbackTests {
  static let backends: [EventLoop.Backend] = [.epoll, .ioUring]

  final class Log { var entries: [String] = [] }
  struct Lost: Error, Equatable {}

  /// Callbacks run in the order added, in a later step (not inside
  /// `succeed`), ahead of the task the same completion wakes; each sees the
  /// outcome.
  @Test(arguments: backends)
  func callbacksRunInOrderAfterCompletion(_ backend: EventLoop.Backend) throws {
    let loop = try makeLoop(backend, clock: .manual)
    let log = LoopThreadBox(Log())
    try loop.runUntilComplete { () async throws in
      let future = Future<Int>()
      let waiter = loop.spawn { () async throws in
        let v = try await future.value
        log.value.entries.append("waiter \(v)")
      }
      try await sleep(for: .zero)  // the waiter waits now
      future.onDone { f in log.value.entries.append("first \(try! f.result!.get())") }
      future.onDone { _ in log.value.entries.append("second") }
      #expect(future.result == nil)
      future.succeed(7)
      log.value.entries.append("after succeed")
      try await waiter.value
    }
    #expect(log.value.entries == ["after succeed", "first 7", "second", "waiter 7"])
  }

  /// On a complete future the callback is queued at once, and runs in the
  /// next step; a failure read in it counts as retrieved.
  @Test(arguments: backends)
  func aCallbackOnACompleteFutureRunsSoon(_ backend: EventLoop.Backend) throws {
    let loop = try makeLoop(backend, clock: .manual)
    let log = LoopThreadBox(Log())
    try loop.runUntilComplete { () async throws in
      let future = Future<String>()
      future.fail(Lost())
      let handle = future.onDone { f in
        if case .failure(let error)? = f.result { log.value.entries.append("failed \(error is Lost)") }
      }
      #expect(handle.isPending)
      log.value.entries.append("added")
      try await sleep(for: .zero)
      #expect(!handle.isPending)
      #expect(!handle.cancel())
      let cancelled = Future<Int>()
      cancelled.cancel()
      cancelled.onDone { f in
        if case .failure(let error)? = f.result { log.value.entries.append("cancelled \(error as? TinyAsyncError == .cancelled)") }
      }
      try await sleep(for: .zero)
    }
    #expect(log.value.entries == ["added", "failed true", "cancelled true"])
  }

  /// A removed callback never runs, whether removed before the completion
  /// or between it and its turn, and what it captured is released at once.
  @Test(arguments: backends)
  func aRemovedCallbackNeverRunsAndIsReleased(_ backend: EventLoop.Backend) throws {
    let loop = try makeLoop(backend, clock: .manual)
    let log = LoopThreadBox(Log())
    try loop.runUntilComplete { () async throws in
      let future = Future<Int>()
      weak var watched: Token?
      var handle: DoneCallbackHandle
      do {
        let token = Token()
        watched = token
        handle = future.onDone { _ in _ = token; log.value.entries.append("removed one ran") }
      }
      #expect(watched != nil)
      #expect(handle.cancel())
      #expect(watched == nil)
      #expect(!handle.cancel())

      let late = future.onDone { _ in log.value.entries.append("late one ran") }
      let kept = future.onDone { _ in log.value.entries.append("kept") }
      future.succeed(1)
      #expect(late.cancel())  // queued, not run yet
      try await sleep(for: .zero)
      #expect(!kept.isPending)
    }
    #expect(log.value.entries == ["kept"])
  }

  /// A callback holds the future until it has run: a future dropped right
  /// after its completion still reaches its callbacks.
  @Test(arguments: backends)
  func aCallbackKeepsItsFutureUntilItRuns(_ backend: EventLoop.Backend) throws {
    let loop = try makeLoop(backend, clock: .manual)
    let log = LoopThreadBox(Log())
    try loop.runUntilComplete { () async throws in
      do {
        let future = Future<String>()
        future.onDone { f in log.value.entries.append(try! f.result!.get()) }
        future.succeed("still here")
      }
      try await sleep(for: .zero)
    }
    #expect(log.value.entries == ["still here"])
  }
}
