internal import CLoop

// The fibers' waits: the async front's operations as synchronous throwing
// functions of the same names. Swift picks these in a fiber (synchronous
// code) and the async ones in async code. Each parks only the calling fiber,
// through `fiberSuspend`, on the C core's coroutine level.

/// Parks the calling fiber for `duration` on the loop's timer heap; zero or
/// negative yields to the loop once, so the work already queued runs first
/// (asyncio's `sleep(0)`). The fiber form of ``sleep(for:)``;
/// Glibc's `sleep(_:)` is a different function and still blocks the thread.
///
/// - Throws: ``TinyAsyncError/cancelled`` when the fiber is cancelled
///   while it sleeps (or was before), ``TinyAsyncError/timedOut`` when an
///   enclosing ``withTimeout(_:_:)`` expires.
///
/// Outside a fiber it stops the program with a message.
///
/// ```swift
/// try EventLoop.runFiber {
///     try sleep(for: .milliseconds(50))  // in a fiber: no await
/// }
/// ```
@available(*, noasync, message: "in async code, use try await sleep(for:)")
public func sleep(for duration: Duration) throws(TinyAsyncError) {
  // A yield skips the conversion (Int128 arithmetic, about 10 ns). Read
  // the raw attoseconds of the frozen struct: `.zero` and `<=` are calls
  // into libswiftCore that cost as much again.
  let isZeroOrLess = duration._high < 0 || (duration._high == 0 && duration._low == 0)
  let ns = isZeroOrLess ? 0 : duration.saturatingNanoseconds
  try fiberCall("sleep(for:)") { cloop_sleep(ns) }
}

extension Future {
  /// The value, from a fiber: parks the calling fiber until the future is
  /// complete. Throws the error it failed with, ``TinyAsyncError/cancelled``
  /// if it (or the waiting fiber) was cancelled, ``TinyAsyncError/timedOut``
  /// in an expired ``withTimeout(_:_:)``. Cancelling the waiting fiber
  /// leaves the future alone. A complete future answers anywhere; a pending
  /// one outside a fiber stops the program with a message.
  @available(*, noasync, message: "in async code, use try await future.value")
  public func get() throws -> Value {
    if isDone { return try takeValue() }
    loop.checkThread("Future.get")
    let cFuture = cFutureForFiber()
    try fiberCall("Future.get()") { cloop_await(cFuture, nil) }
    return try takeValue()
  }
}

// MARK: gather

/// Waits, in a fiber, for all the given fibers and returns their values in
/// argument order, typed (asyncio's `gather`; the fiber form of
/// ``gather(_:)``).
///
/// When one fails, the others still running are cancelled and waited for;
/// then the first failure by position is thrown (a fiber that failed only
/// because gather cancelled it does not count). If the waiting fiber is
/// cancelled, or an enclosing ``withTimeout(_:_:)`` expires, all of them are
/// cancelled and waited for, then ``TinyAsyncError/cancelled`` (or
/// ``TinyAsyncError/timedOut``) is thrown. Either way no fiber is left
/// running, and no error goes unretrieved.
///
/// ```swift
/// try EventLoop.runFiber {
///     let loop = EventLoop.current!
///     let a = loop.spawnFiber { try sleep(for: .milliseconds(30)); return 1 }
///     let b = loop.spawnFiber { try sleep(for: .milliseconds(10)); return "two" }
///     let (one, two) = try gather(a, b)  // (1, "two"), after 30 ms
/// }
/// ```
@available(*, noasync, message: "in async code, use try await gather(...)")
public func gather<each Value>(
  _ fibers: repeat FiberHandle<each Value>
) throws -> (repeat each Value) {
  var nodes: [FiberNode] = []
  for fiber in repeat each fibers { nodes.append(fiber.state) }
  let state = FiberGather(nodes)
  try state.run()
  var position = 0
  var failure: (any Error)?
  for fiber in repeat each fibers {
    if case .failure(let error)? = fiber.state.future.takeResult(),
      failure == nil, !state.cancelledByGather[position]
    {
      failure = error
    }
    position += 1
  }
  if let failure { throw failure }
  if let interruption = state.interruption { throw interruption }
  return (repeat try (each fibers).state.future.takeResult()!.get())
}

/// The fiber gather's waits. Phase one parks on `trigger`, a C future the
/// fibers' completions fill once all are done or one has failed; phase two
/// cancels the rest and waits for their C tasks with `cloop_gather`, which
/// keeps waiting (cancelling them again) if this fiber is interrupted.
private final class FiberGather {
  let nodes: [FiberNode]
  var cancelledByGather: [Bool]
  private(set) var interruption: TinyAsyncError?

  init(_ nodes: [FiberNode]) {
    self.nodes = nodes
    cancelledByGather = Array(repeating: false, count: nodes.count)
  }

  func run() throws(TinyAsyncError) {
    guard let first = nodes.first else { return }
    let loop = first.loop
    loop.checkThread("gather")
    var pending = nodes.filter { !$0.isDone }.count
    guard pending > 0 else { return }
    requireFiber("gather")
    if !nodes.contains(where: { $0.isDone && $0.hasFailed }) {
      // Heap, not this stack: the loop completes it.
      let trigger = UnsafeMutablePointer<cloop_future>.allocate(capacity: 1)
      trigger.initialize(to: cloop_future())
      cloop_future_init(trigger, loop.cLoop)
      // Every observer has run before this function returns (phase two
      // waits for all the fibers), so none touches `trigger` after it goes.
      defer { trigger.deallocate() }
      for node in nodes where !node.isDone {
        node.whenDone { ok in
          pending -= 1
          if !ok || pending == 0 { _ = cloop_future_set_result(trigger, 0) }
        }
      }
      let rc = fiberSuspend("gather") { cloop_await(trigger, nil) }
      if rc < 0 { interruption = TinyAsyncError(code: rc) }
      if pending > 0 { try cancelAndWait() }
    } else {
      try cancelAndWait()
    }
  }

  private func cancelAndWait() throws(TinyAsyncError) {
    var futures: [UnsafeMutablePointer<cloop_future>?] = []
    for (position, node) in nodes.enumerated() where !node.isDone {
      cancelledByGather[position] = true
      node.cancel()
      futures.append(node.cTaskFuture)
    }
    let rc = futures.withUnsafeBufferPointer { buffer in
      fiberSuspend("gather") { cloop_gather(buffer.baseAddress, buffer.count, nil) }
    }
    // The C tasks return 0; only an interruption of this fiber shows.
    if rc < 0, interruption == nil { interruption = TinyAsyncError(code: rc) }
  }
}

/// Waits, in async code, for all the given fibers and returns their values
/// in argument order: ``gather(_:)`` for ``FiberHandle``s, with the same
/// rules (the first failure by position after the rest are cancelled and
/// finished; cancellation and timeouts cancel them all).
///
/// ```swift
/// try loop.runUntilComplete {
///     let a = loop.spawnFiber { try sleep(for: .milliseconds(20)); return 1 }
///     let b = loop.spawnFiber { 2 }
///     let (x, y) = try await gather(a, b)  // (1, 2)
/// }
/// ```
public func gather<each Value>(
  _ fibers: repeat FiberHandle<each Value>
) async throws -> (repeat each Value) {
  let loop = EventLoop.running(for: "gather")
  let state = GatherState(loop: loop)
  for fiber in repeat each fibers {
    state.watch(fiber.state.future, cancel: fiber.state)
  }
  try await state.run()
  var position = 0
  var failure: (any Error)?
  for fiber in repeat each fibers {
    if case .failure(let error)? = fiber.state.future.takeResult(),
      failure == nil, !state.wasCancelledByGather(position)
    {
      failure = error
    }
    position += 1
  }
  if let failure { throw failure }
  if let interruption = state.interruption { throw interruption }
  return (repeat try (each fibers).state.future.takeResult()!.get())
}

// MARK: withTimeout

// Disfavoured: in async code a closure without `await` fits this overload
// better than the async one (no conversion to an async function type), and
// Swift would pick it there, to stop at run time for want of a fiber. In a
// fiber the async overload cannot be called, so this one is still chosen.
/// Runs `body` in the calling fiber, interrupting it once `timeout` has
/// passed (asyncio's `timeout()`; the fiber form of
/// ``withTimeout(_:isolation:_:)``): the suspension the fiber is parked in
/// then -- or starts later, inside the scope -- throws
/// ``TinyAsyncError/timedOut``, which unwinds `body` unless it catches it.
/// Scopes nest; each has its own deadline. If `body` returns first, its
/// value is returned; a `body` that catches the timeout and returns
/// normally is not overruled.
///
/// Covered are this fiber's waits (sleep, a future's or fiber's `get()`,
/// gather, sockets, the synchronisation primitives), not those of the
/// fibers or tasks it starts. Outside a fiber it stops the program with a
/// message.
///
/// ```swift
/// try EventLoop.runFiber {
///     do {
///         try withTimeout(.milliseconds(100)) { try sleep(for: .seconds(10)) }
///     } catch TinyAsyncError.timedOut {
///         print("gave up after 100 ms")
///     }
/// }
/// ```
@_disfavoredOverload
@available(*, noasync, message: "in async code, use try await withTimeout(_:_:)")
public func withTimeout<Value>(
  _ timeout: Duration,
  _ body: () throws -> Value
) throws -> Value {
  requireFiber("withTimeout")
  // The scope's record may live on this stack: the loop never touches it.
  var deadline = cloop_deadline()
  return try withUnsafeMutablePointer(to: &deadline) { scope in
    let rc = cloop_deadline_enter(scope, timeout.saturatingNanoseconds)
    ensure(rc == 0, "cloop_deadline_enter: \(TinyAsyncError(code: rc))")  // -ENOMEM only
    let result = Result { try body() }
    _ = cloop_deadline_exit(scope)
    return try result.get()
  }
}
