/// A fiber started with ``EventLoop/spawnFiber(name:stack:_:)``: wait for its
/// result, ``cancel()`` it, read its ``name``.
///
/// In another fiber, ``get()-38xfl`` parks that fiber until this one ends;
/// in async code, `try await handle.value` (or `get()`, the async overload)
/// parks the Swift task. Swift picks the synchronous `get()` in a fiber and
/// the async one in async code.
///
/// The fiber runs whether or not anyone keeps the handle. If it fails and
/// nobody reads its error, the error is logged when the handle and the
/// fiber are gone (asyncio's "exception was never retrieved"). A struct:
/// copies are handles on the same fiber (one allocation less per spawn).
///
/// A fiber is not a Swift task: it cannot `await` (Swift async code runs in
/// tasks, which can wait for a fiber through ``value``), and `@TaskLocal`
/// values do not cross into it or between fibers (see
/// ``EventLoop/spawnFiber(name:stack:_:)``). The handle belongs to its loop's
/// thread.
///
/// ```swift
/// let loop = try EventLoop()
/// try loop.runFiberUntilComplete {
///     let slow = loop.spawnFiber(name: "slow") { () throws -> String in
///         try sleep(for: .seconds(10))
///         return "done"
///     }
///     try sleep(for: .milliseconds(10))
///     slow.cancel()
///     do { _ = try slow.get() } catch TinyAsyncError.cancelled { print("\(slow.name) cancelled") }
/// }
/// ```
public struct FiberHandle<Value> {
  let state: FiberState<Value>

  @usableFromInline
  init(state: FiberState<Value>) {
    self.state = state
  }

  /// The name given at spawn, or `fiber-N` (N counting the loop's spawns).
  public var name: String { state.name }

  /// `true` once the fiber has finished (returned, thrown, or cancelled).
  public var isDone: Bool {
    state.future.loop.checkThread("FiberHandle.isDone")
    return state.future.isComplete
  }

  /// The fiber's result, from a fiber: parks the calling fiber until this
  /// one finishes. Throws what the fiber threw (``TinyAsyncError/cancelled``
  /// if it was cancelled and stopped), or, if the waiting fiber is
  /// cancelled first or its ``withTimeout(_:_:)`` scope expires,
  /// ``TinyAsyncError/cancelled`` / ``TinyAsyncError/timedOut`` (this fiber
  /// keeps running: ``get(timeout:)`` cancels it). Once the fiber has
  /// finished it answers anywhere.
  @available(*, noasync, message: "in async code, use try await handle.value")
  public func get() throws -> Value {
    try state.future.get(inFiber: "FiberHandle.get()")
  }

  /// The fiber's result within `timeout`, from a fiber (asyncio's
  /// `wait_for`): if the fiber has not finished by then, or the waiting
  /// fiber is cancelled, this one is cancelled and awaited -- its clean-up
  /// has run when this throws ``TinyAsyncError/timedOut`` (or
  /// ``TinyAsyncError/cancelled``). A fiber that finishes as the deadline
  /// passes gives its result. (`withTimeout { try handle.get() }` instead
  /// leaves the fiber running.)
  @available(*, noasync, message: "in async code, use try await handle.value(timeout:)")
  public func get(timeout: Duration) throws -> Value {
    state.future.loop.checkThread("FiberHandle.get(timeout:)")
    do {
      return try withTimeout(timeout) { try state.future.get() }
    } catch {
      if state.future.isComplete { return try state.future.get() }
      state.cancel()
      _ = try? withShield { try state.future.get() }
      throw error
    }
  }

  /// The fiber's result within `timeout`, from async code: as
  /// ``get(timeout:)``, the fiber cancelled and awaited on expiry.
  public func value(timeout: Duration) async throws -> Value {
    state.future.loop.checkThread("FiberHandle.value(timeout:)")
    do {
      return try await withTimeout(timeout) { try await state.future.get() }
    } catch {
      if state.future.isComplete { return try await state.future.get() }
      state.cancel()
      _ = try? await withShield { try await state.future.get() }
      throw error
    }
  }

  /// The fiber's result, from async code: parks the Swift task until the
  /// fiber finishes (see ``value``).
  public func get() async throws -> Value {
    try await state.future.get("FiberHandle.get()")
  }

  /// The fiber's result, from async code. Throws what the fiber threw, or
  /// ``TinyAsyncError/cancelled`` if the waiting task is cancelled first
  /// (the fiber keeps running; so it does past a `withTimeout` around this:
  /// ``value(timeout:)`` cancels it). In a fiber, call ``get()-38xfl``.
  public var value: Value {
    get async throws { try await state.future.get("FiberHandle.value") }
  }

  /// Requests cancellation: the suspension the fiber is parked in (or its
  /// next one) throws ``TinyAsyncError/cancelled``, so its frames unwind
  /// unless it catches the error; a fiber that has not started yet never
  /// runs its body. A fiber may cancel itself. Loop thread only.
  public func cancel() {
    state.cancel()
  }
}

@available(*, unavailable, message: "a FiberHandle belongs to its loop's thread")
extension FiberHandle: Sendable {}
