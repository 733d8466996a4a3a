/// A task started with ``EventLoop/spawn(name:isolation:_:)``: await its ``value``,
/// ``cancel()`` it, read its ``name`` (asyncio's `Task`, named so as not to
/// shadow Swift's `Task`).
///
/// The task runs whether or not anyone keeps the handle. If it fails and
/// nobody reads its error, the error is logged when the handle and the task
/// are gone (asyncio's "exception was never retrieved").
///
/// A struct, as Swift's `Task` is: copies are handles on the same task
/// (one allocation less per spawn than a class).
///
/// ```swift
/// try EventLoop.run {
///     let loop = EventLoop.current!
///     let slow = loop.spawn(name: "slow") {
///         try await sleep(for: .seconds(10))
///         return "done"
///     }
///     try await sleep(for: .milliseconds(10))
///     slow.cancel()
///     do { _ = try await slow.value } catch TinyAsyncError.cancelled { print("\(slow.name) cancelled") }
/// }
/// ```
public struct TaskHandle<Value> {
  let state: SpawnedTask<Value>

  @usableFromInline
  init(state: SpawnedTask<Value>) {
    self.state = state
  }

  /// The name given at spawn, or `task-N` (N counting the loop's spawns).
  public var name: String { state.name }

  /// `true` once the task has finished (returned, thrown, or cancelled).
  public var isDone: Bool {
    state.future.loop.checkThread("TaskHandle.isDone")
    return state.future.isComplete
  }

  /// The task's result: waits until it finishes. Throws what the task
  /// threw (``TinyAsyncError/cancelled`` if it was cancelled and stopped),
  /// or, if the waiting task is cancelled first, ``TinyAsyncError/cancelled``
  /// (the awaited task keeps running; so it does past a `withTimeout`
  /// around this: ``value(timeout:)`` cancels it).
  public nonisolated(nonsending) var value: Value {
    get async throws { try await state.future.get("TaskHandle.value") }
  }

  /// The task's result within `timeout` (asyncio's `wait_for`): if the task
  /// has not finished by then, or the waiting task is cancelled, it is
  /// cancelled and awaited -- its clean-up has run, nothing of it is left
  /// running -- and this throws ``TinyAsyncError/timedOut`` (or
  /// ``TinyAsyncError/cancelled``). A task that finishes as the deadline
  /// passes gives its result. A task that ignores its cancellation is
  /// waited for (as asyncio does).
  public nonisolated(nonsending) func value(timeout: Duration) async throws -> Value {
    state.future.loop.checkThread("TaskHandle.value(timeout:)")
    do {
      return try await withTimeout(timeout) { try await state.future.get() }
    } catch {
      if state.future.isComplete { return try await state.future.get() }
      state.cancel()
      _ = try? await withShield { try await state.future.get() }
      throw error
    }
  }

  /// Requests cancellation: the loop operation the task waits in (or its
  /// next one) throws ``TinyAsyncError/cancelled``, and Swift's
  /// `Task.isCancelled` turns true in it. Any thread.
  public func cancel() {
    state.future.loop.checkThread("TaskHandle.cancel()")
    state.cancel()
  }
}

@available(*, unavailable, message: "a TaskHandle belongs to its loop's thread")
extension TaskHandle: Sendable {}
