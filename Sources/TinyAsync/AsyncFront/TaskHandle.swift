internal import CLoop

/// A task started with ``EventLoop/spawn(name:_:)``: await its ``value``,
/// ``cancel()`` it, read its ``name`` (asyncio's `Task`, named so as not to
/// shadow Swift's `Task`).
///
/// The task runs whether or not anyone keeps the handle. If it fails and
/// nobody reads its error, the error is logged when the handle and the task
/// are gone (asyncio's "exception was never retrieved").
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
public final class TaskHandle<Value> {
  let state: SpawnedTask<Value>

  init(state: SpawnedTask<Value>) {
    self.state = state
  }

  /// The name given at spawn, or `task-N` (N counting the loop's spawns).
  public var name: String { state.name }

  /// `true` once the task has finished (returned, thrown, or cancelled).
  public var isDone: Bool { state.future.isDone }

  /// The task's result: waits until it finishes. Throws what the task
  /// threw (``TinyAsyncError/cancelled`` if it was cancelled and stopped),
  /// or, if the waiting task is cancelled first, ``TinyAsyncError/cancelled``
  /// (the awaited task keeps running).
  public nonisolated(nonsending) var value: Value {
    get async throws { try await state.future.get() }
  }

  /// Requests cancellation: the loop operation the task waits in (or its
  /// next one) throws ``TinyAsyncError/cancelled``, and Swift's
  /// `Task.isCancelled` turns true in it. Any thread.
  public func cancel() {
    state.cancel()
  }
}

@available(*, unavailable, message: "a TaskHandle belongs to its loop's thread")
extension TaskHandle: Sendable {}

/// A spawned task's bookkeeping, on the loop's list of live spawned tasks
/// until it ends (so that ``EventLoop/runUntilComplete(_:)`` can cancel
/// and finish what its main task left running).
///
/// `@unchecked Sendable`: the Swift task's closure captures it; all
/// of it is touched on the loop's thread, except `task.cancel()`, which is
/// thread-safe.
class SpawnedNode: @unchecked Sendable {
  @exclusivity(unchecked) var next: SpawnedNode?
  @exclusivity(unchecked) unowned(unsafe) var prev: SpawnedNode?
  func cancel() {}
}

final class SpawnedTask<Value>: SpawnedNode, @unchecked Sendable {
  let future: Future<Value>
  private let givenName: String?
  private let number: Int
  @exclusivity(unchecked) var task: Task<Void, Never>?

  init(loop: EventLoop, name: String?, number: Int) {
    future = Future(on: loop)
    givenName = name
    self.number = number
  }

  /// Made when asked for: formatting `task-N` at every spawn cost more
  /// than the rest of the spawn's own bookkeeping.
  var name: String { givenName ?? "task-\(number)" }

  override func cancel() {
    task?.cancel()
  }
}

extension EventLoop {
  /// Starts `body` as a new Swift task on this loop and returns its handle
  /// (asyncio's `create_task`). It first runs in a coming iteration, after
  /// what is already queued; every step of it runs on this loop's thread,
  /// and so do its child tasks. A running spawned task keeps ``run()``
  /// going; ``runUntilComplete(_:)`` cancels and finishes the ones still
  /// running when its main task returns.
  ///
  /// A spawned task does not inherit an enclosing ``withTimeout(_:_:)``.
  ///
  /// ```swift
  /// let handles = (1...3).map { i in loop.spawn { try await sleep(for: .milliseconds(10 * i)); return i } }
  /// ```
  @discardableResult
  public func spawn<Value>(
    name: String? = nil,
    isolation: isolated (any Actor)? = #isolation,
    _ body: @escaping () async throws -> Value
  ) -> TaskHandle<Value> {
    checkThread("EventLoop.spawn")
    // `body` has the isolation of the code that wrote it, `isolation`. A
    // closure isolated to an actor runs on that actor's executor. One
    // written in top-level code or a @MainActor function is isolated to the
    // main actor, which on Linux runs from the main thread's Dispatch queue:
    // that never drains while the loop blocks the thread, so the task would
    // never start (and off the loop's thread its waits could not work).
    // Stop with a message rather than hang.
    if let actor = isolation, (actor.unownedExecutor.asSerialExecutor() as? EventLoop) !== self {
      misuse("EventLoop.spawn: the closure is isolated to \(type(of: actor)) (written in top-level code or in that actor's code), not to the loop; spawn from async code running on the loop, e.g. inside EventLoop.run { ... }")
    }
    spawnCount += 1
    let state = SpawnedTask<Value>(loop: self, name: name, number: spawnCount)
    linkSpawned(state)
    cloop_ref(cLoop)
    let loop = self
    let clearScope = TimeoutScope.current != nil
    // `body` is not `sending`, so tasks of one loop can share loop-confined
    // state (a Future, a counter), as asyncio's tasks do. That is sound
    // because it only ever runs on this loop's thread: its task's executor
    // preference is the loop, and a body isolated to an actor hops there
    // itself. Swift cannot see that, hence the unchecked box.
    let body = LoopThreadOnly(body)
    state.task = Task(name: name, executorPreference: self) {
      // No `Result<Value, _>` here: unspecialized (the caller's `Value`
      // is another module's), each one costs a runtime metadata lookup.
      do {
        let value: Value
        if clearScope {
          value = try await TimeoutScope.$current.withValue(nil) { try await body.value() }
        } else {
          value = try await body.value()
        }
        loop.spawnedTaskEnded(state)
        state.future.succeed(value)
      } catch {
        loop.spawnedTaskEnded(state)
        state.future.fail(error)
      }
    }
    cancelIfFinishing(state)
    return TaskHandle(state: state)
  }

  /// A spawned task has returned or thrown: it no longer keeps the loop
  /// running (its future is completed right after).
  fileprivate func spawnedTaskEnded(_ state: SpawnedNode) {
    unlinkSpawned(state)
    cloop_unref(cLoop)
  }
}
