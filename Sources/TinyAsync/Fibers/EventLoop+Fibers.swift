internal import CLoop

extension EventLoop {
  /// Starts `body` as a fiber on this loop and returns its handle. A fiber
  /// is synchronous Swift code on its own stack (a C task of the loop's
  /// coroutine level): where it waits -- ``sleep(for:)-8kvpr``,
  /// ``Future/get()-94ox2``, ``FiberHandle/get()-38xfl``, ``gather(_:)-5dzol``,
  /// inside ``withTimeout(_:_:)`` -- it parks and the loop runs other work,
  /// at the cost of a register switch instead of an async task's
  /// continuation. It first runs in a coming iteration, after what is
  /// already queued.
  ///
  /// A running fiber keeps ``runUntilIdle()`` going; ``runFiberUntilComplete(_:)`` and
  /// ``runUntilComplete(_:)`` cancel and finish the ones still running when
  /// their main work returns. A fiber keeps its loop alive until it ends.
  ///
  /// Inside a fiber, Swift async code cannot be awaited: the closure is
  /// synchronous. Spawn an async task with ``spawn(name:isolation:_:)`` and
  /// hand its result over through a ``Future`` the fiber calls `get()` on.
  ///
  /// `@TaskLocal` does not cross fibers. A fiber is no Swift task: it does
  /// not see the task-local values bound where it was spawned, and all the
  /// fibers of a thread share one task-local context (the thread's, or that
  /// of the Swift task that runs the loop). So do not bind one with
  /// `withValue` around code that suspends the fiber: the fibers that run
  /// meanwhile would see the binding, and the bindings would be undone out
  /// of order. Pass such values as arguments instead.
  ///
  /// ```swift
  /// let loop = try EventLoop()
  /// let worker = loop.spawnFiber(name: "worker") { () throws -> Int in
  ///     try sleep(for: .milliseconds(10))   // parks this fiber only
  ///     return 42
  /// }
  /// let answer = try loop.runFiberUntilComplete { try worker.get() }  // 42
  /// ```
  ///
  /// `stack` chooses where the fiber's frames live (see ``FiberStack``):
  /// a guarded stack of its own, or the loop's shared stack, for very many
  /// small fibers.
  @inlinable
  @discardableResult
  public func spawnFiber<Value>(
    name: String? = nil,
    stack: FiberStack = .private,
    _ body: @escaping () throws -> Value
  ) -> FiberHandle<Value> {
    // Inlinable: in the caller's module `FiberState<Value>`, `Future<Value>`
    // and `FiberHandle<Value>` are concrete types, whose metadata the
    // compiler caches; here, generic, each is a runtime lookup under a lock
    // per spawn (about 330 instructions each, callgrind). The rest is
    // `startFiber`, not generic.
    let number = beginSpawn("EventLoop.spawnFiber")
    let state = FiberState<Value>(future: Future(on: self), name: name, number: number, body: body)
    startFiber(state, name: name, stack: stack)
    return FiberHandle(state: state)
  }

  /// The thread check and the number of a spawn (`task-N`, `fiber-N`).
  @usableFromInline
  func beginSpawn(_ operation: StaticString) -> Int {
    checkThread(operation)
    spawnCount += 1
    return spawnCount
  }

  /// Starts the C task of a fiber made by ``spawnFiber(name:stack:_:)``.
  @usableFromInline
  func startFiber(_ state: FiberNode, name: String?, stack: FiberStack) {
    let arg = Unmanaged.passRetained(state).toOpaque()
    var task: OpaquePointer?
    var options = cloop_spawn_options(name: nil, stack: stack.cValue)
    let rc: Int32
    if let name {
      rc = name.withCString { name in
        options.name = name
        return cloop_spawn_ex(cLoop, &task, fiberEntry, arg, &options)
      }
    } else {
      rc = cloop_spawn_ex(cLoop, &task, fiberEntry, arg, &options)
    }
    // The only failure is -ENOMEM (a task record or a stack); Swift traps
    // on running out of memory too.
    ensure(rc == 0, "EventLoop.spawnFiber: cloop_spawn_ex: \(TinyAsyncError(code: rc))")
    state.cTask = task
    linkSpawned(state)
    cloop_ref(cLoop)  // it may wait for another thread (FutureCompleter)
    cancelIfFinishing(state)
  }

  /// Runs `body` as this loop's main fiber until it returns, and returns
  /// what it returned (or rethrows what it threw): ``runUntilComplete(_:)``
  /// for fibers. Then cancels the fibers and tasks it started that are
  /// still running and runs the loop until they have ended.
  ///
  /// ```swift
  /// let loop = try EventLoop()
  /// let total = try loop.runFiberUntilComplete { () throws -> Int in
  ///     let a = loop.spawnFiber { try sleep(for: .milliseconds(30)); return 1 }
  ///     let b = loop.spawnFiber { try sleep(for: .milliseconds(10)); return 2 }
  ///     let (x, y) = try gather(a, b)
  ///     return x + y
  /// }
  /// ```
  /// Call it on the loop's thread, outside any running loop (not from a
  /// task, fiber or callback: a nested run stops the program).
  public func runFiberUntilComplete<Value>(_ body: @escaping () throws -> Value) throws -> Value {
    try runMainFiber("EventLoop.runFiberUntilComplete", body)
  }

  private func runMainFiber<Value>(_ operation: StaticString, _ body: @escaping () throws -> Value) throws -> Value {
    checkThread(operation)
    Self.checkNotNested(operation)
    let main = spawnFiber(name: "main", body)
    let cLoop = self.cLoop
    main.state.future.whenComplete { _ in cloop_stop(cLoop) }
    while !main.state.future.isComplete {
      let rc = cloop_run(cLoop)
      if rc < 0 { throw TinyAsyncError(code: rc) }
    }
    try finishSpawned()
    return try main.state.future.takeValue()
  }

  /// asyncio's `run` for fibers: makes a loop on this thread with
  /// `backend`, runs `body` on it as the main fiber (see ``runFiberUntilComplete(_:)``),
  /// and closes the loop.
  ///
  /// ```swift
  /// let value = try EventLoop.runFiber { () throws -> String in
  ///     try sleep(for: .milliseconds(5))
  ///     return "done"
  /// }
  /// ```
  public static func runFiber<Value>(
    backend: Backend = .automatic,
    _ body: @escaping () throws -> Value
  ) throws -> Value {
    checkNotNested("EventLoop.runFiber")
    let loop = try EventLoop(backend: backend)
    return try loop.runMainFiber("EventLoop.runFiber", body)
  }
}
