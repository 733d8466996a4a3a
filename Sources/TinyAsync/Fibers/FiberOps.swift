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
  // A yield skips the conversion (Int128 arithmetic, about 10 ns). The
  // test reads `attoseconds`, an Int128 that is inlined here: `.zero` and
  // Duration's `<=` are calls into libswiftCore that cost as much again.
  let ns = duration.attoseconds <= 0 ? 0 : duration.saturatingNanoseconds
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
    try get(inFiber: "Future.get()")
  }

  /// The fiber form of ``get()`` for the handles whose value is this
  /// future's: `operation` is the call a misuse message names.
  func get(inFiber operation: StaticString) throws -> Value {
    loop.checkThread(operation)
    if isComplete { return try takeValue() }
    let cFuture = cFutureForFiber()
    try fiberCall(operation) { cloop_await(cFuture, nil) }
    return try takeValue()
  }
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

// MARK: withShield

/// Runs `body` in the calling fiber shielded (asyncio's `shield`; the fiber
/// form of ``withShield(timeout:isolation:_:)``): inside it the fiber's
/// waits ignore its cancellation and the deadlines of the ``withTimeout(_:_:)``
/// scopes around it. Both are kept: the first wait after the shield throws
/// them. With a `timeout` the shield has a deadline of its own; scopes
/// inside it still apply. For clean-up that must run after a cancellation
/// (a goodbye on a socket, waiting for a child). Outside a fiber it stops
/// the program with a message.
@_disfavoredOverload
@available(*, noasync, message: "in async code, use try await withShield(timeout:_:)")
public func withShield<Value>(
  timeout: Duration? = nil,
  _ body: () throws -> Value
) throws -> Value {
  requireFiber("withShield")
  var deadline = cloop_deadline()
  return try withUnsafeMutablePointer(to: &deadline) { scope in
    // Int64.max is the C core's CLOOP_NO_DEADLINE: no deadline of its own.
    let rc = cloop_shield_enter(scope, timeout?.saturatingNanoseconds ?? .max)
    ensure(rc == 0, "cloop_shield_enter: \(TinyAsyncError(code: rc))")  // -ENOMEM only
    let result = Result { try body() }
    _ = cloop_deadline_exit(scope)
    return try result.get()
  }
}
