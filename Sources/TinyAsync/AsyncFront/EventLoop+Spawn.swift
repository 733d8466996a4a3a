internal import CLoop

extension EventLoop {
  /// Starts `body` as a new Swift task on this loop and returns its handle
  /// (asyncio's `create_task`). It first runs in a coming iteration, after
  /// what is already queued; every step of it runs on this loop's thread,
  /// and so do its child tasks. A running spawned task keeps ``runUntilIdle()``
  /// going; ``runUntilComplete(_:)`` cancels and finishes the ones still
  /// running when its main task returns.
  ///
  /// A spawned task does not inherit an enclosing ``withTimeout(_:_:)``.
  ///
  /// ```swift
  /// let handles = (1...3).map { i in loop.spawn { try await sleep(for: .milliseconds(10 * i)); return i } }
  /// ```
  @inlinable
  @discardableResult
  public func spawn<Value>(
    name: String? = nil,
    isolation: isolated (any Actor)? = #isolation,
    _ body: @escaping () async throws -> Value
  ) -> TaskHandle<Value> {
    // Inlinable, as `spawnFiber`: the caller's module makes the generic
    // objects, whose metadata it caches (two runtime lookups fewer per
    // spawn); the rest is `startTask`.
    let number = beginSpawn("EventLoop.spawn")
    let state = SpawnedTask<Value>(future: Future(on: self), name: name, number: number)
    startTask(state, name: name, isolation: isolation, body)
    return TaskHandle(state: state)
  }

  /// Starts the Swift task of a task made by ``spawn(name:isolation:_:)``.
  @usableFromInline
  func startTask<Value>(
    _ state: SpawnedTask<Value>,
    name: String?,
    isolation: (any Actor)?,
    _ body: @escaping () async throws -> Value
  ) {
    // `body` has the isolation of the code that wrote it, `isolation`. A
    // closure isolated to an actor runs on that actor's executor. One
    // written in top-level code or a @MainActor function is isolated to the
    // main actor, which on Linux runs from the main thread's Dispatch queue:
    // that never drains while the loop blocks the thread, so the task would
    // never start (and off the loop's thread its waits could not work).
    // Stop with a message rather than hang.
    if let actor = isolation, (actor.unownedExecutor.asSerialExecutor() as? EventLoop) !== self {
      let fix = isInFiber
        ? "in a fiber, move its code into a function (a function is not isolated to an actor, even in main.swift) and call that from the fiber's closure"
        : "call it from async code running on the loop, e.g. inside EventLoop.run { ... }, whose closure is not isolated to an actor"
      misuse("EventLoop.spawn was called from code isolated to \(type(of: actor)) (top-level code, or that actor's code), not to the loop; \(fix)")
    }
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
        state.future.fail(TinyAsyncError.unified(error))
      }
    }
    cancelIfFinishing(state)
  }

  /// A spawned task has returned or thrown: it no longer keeps the loop
  /// running (its future is completed right after).
  fileprivate func spawnedTaskEnded(_ state: SpawnedNode) {
    unlinkSpawned(state)
    cloop_unref(cLoop)
  }
}
