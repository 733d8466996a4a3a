internal import CLoop

/// The loop as a Swift executor: async code started on it (by
/// ``EventLoop/runUntilComplete(_:)``, ``EventLoop/run(backend:_:)`` or
/// ``EventLoop/spawn(name:_:)``) runs every step on the loop's thread, in
/// its batches, between its timers and its I/O.
///
/// - As a `TaskExecutor`: a task started with it as executor preference
///   runs its nonisolated code here, and so do its child tasks
///   (`async let`, task groups).
/// - As a `SerialExecutor`: an actor whose `unownedExecutor` is
///   `loop.asUnownedSerialExecutor()` is isolated to the loop.
///
/// A job enqueued on the loop's thread joins its ``ReadyQueue`` (no lock, no
/// allocation once warm); one from another thread takes the thread-safe
/// path and wakes the loop.
extension EventLoop: SerialExecutor, TaskExecutor {
  /// Queues a Swift job (a task's next step) to run on the loop's thread:
  /// at once into the ready queue on that thread, through the thread-safe
  /// path from any other. Called by the Swift runtime.
  public func enqueue(_ job: consuming ExecutorJob) {
    let job = UnownedJob(job)
    if isOnLoopThread {
      jobsEnqueued &+= 1
      noteJob(job)
      readyQueue.push(job)
    } else {
      // No note here: `mainWatch` is the loop thread's. A job from another
      // thread is noted when it runs (see ThreadSafeQueue's drain).
      let accepted = threadSafeQueue.enqueue(.job(job))
      ensure(accepted, "a Swift job was enqueued on an EventLoop that is gone")
    }
  }

  /// This loop as a serial executor, for an actor's `unownedExecutor`.
  public func asUnownedSerialExecutor() -> UnownedSerialExecutor {
    UnownedSerialExecutor(ordinary: self)
  }

  /// This loop as a task executor (what its jobs run on).
  public func asUnownedTaskExecutor() -> UnownedTaskExecutor {
    UnownedTaskExecutor(ordinary: self)
  }

  /// Makes `assumeIsolated` and `preconditionIsolated` work on the loop's
  /// thread: the loop's one thread is its isolation.
  public func checkIsolated() {
    ensure(isOnLoopThread, "not on the EventLoop's thread")
  }

  /// One loop is one thread: the same context only as the same loop.
  public func isSameExclusiveExecutionContext(other: EventLoop) -> Bool {
    self === other
  }
}

/// What a main task left behind: its result, once it has one.
private final class Outcome<Value>: @unchecked Sendable {  // loop thread only
  var result: Result<Value, any Error>?
}

extension EventLoop {
  /// Runs `body` as a Swift task on this loop until it returns, and returns
  /// what it returned (or rethrows what it threw) — asyncio's
  /// `run_until_complete`. Then cancels the tasks it ``spawn(name:isolation:_:)``ed
  /// that are still running and runs the loop until they have ended, so
  /// none is left behind.
  ///
  /// Every step of `body`, and of the tasks it starts here, runs on this
  /// thread. While `body` waits, the loop waits too — also for work that
  /// only another thread can bring (a ``ThreadSafeHandle`` call, a job
  /// resumed elsewhere).
  ///
  /// A main task that waits in one of the loop's own waits (a future, an
  /// event, a lock...) when nothing is left that could wake it — no ready
  /// job, timer, socket or process, work-pool job, ``ref()``, other task
  /// or thread-safe handle — would wait forever: its wait is cancelled
  /// instead, and once the loop has wound down this throws
  /// ``TinyAsyncError/deadlocked``, as the C core's `cloop_main` reports
  /// `-EDEADLK`. The check is conservative: once a task other than the
  /// main one has run on the loop, or a ``ThreadSafeHandle`` was taken, it
  /// stays off for the loop's life and such a wait hangs, as in asyncio.
  ///
  /// ```swift
  /// let loop = try EventLoop()
  /// let answer = try loop.runUntilComplete {
  ///     try await sleep(for: .milliseconds(10))
  ///     return 42
  /// }
  /// ```
  /// Call it on the loop's thread, outside any running loop (not from a
  /// task, fiber or callback: a nested run stops the program).
  public func runUntilComplete<Value>(
    _ body: sending @escaping () async throws -> Value
  ) throws -> Value {
    try runMain("EventLoop.runUntilComplete", body)
  }

  private func runMain<Value>(
    _ operation: StaticString,
    _ body: sending @escaping () async throws -> Value
  ) throws -> Value {
    checkThread(operation)
    Self.checkNotNested(operation)
    let outcome = Outcome<Value>()
    let loop = self
    let body = LoopThreadOnly(body)  // see `spawn(name:isolation:_:)`
    takeMainRef()  // dropped while it is parked in a wait of the loop's
    mainWatch.expectingMain = true  // its first job is enqueued in Task.init
    _ = Task(name: "main", executorPreference: self) {
      do {
        outcome.result = .success(try await body.value())
      } catch {
        outcome.result = .failure(TinyAsyncError.unified(error))
      }
      loop.dropMainRef()
      cloop_stop(loop.cLoop)
    }
    mainWatch.expectingMain = false
    defer { mainWatch.task = nil }
    var deadlocked = false
    while outcome.result == nil {
      let rc = cloop_run(cLoop)
      if rc < 0 { throw TinyAsyncError(code: rc) }
      if rc == 0 && outcome.result == nil {  // out of work, not stopped
        if deadlocked { break }  // parked again after the cancellation
        deadlocked = mainTaskDeadlocked()
      }
    }
    try finishSpawned()
    if deadlocked { throw TinyAsyncError.deadlocked }
    return try outcome.result!.get()
  }

  /// Stops the program if a loop is running on this thread: a nested run
  /// would block the outer loop, every task and callback of it, until the
  /// inner one is done.
  static func checkNotNested(_ operation: StaticString) {
    if cloop_running_loop() != nil {
      misuse("\(operation) was called while an EventLoop is running on this thread (from one of its tasks, fibers or callbacks); a loop cannot run inside another, which would stall the outer one. Await the work instead (loop.spawn it and await its handle), or run the other loop on a thread of its own")
    }
  }

  /// asyncio's `run`: makes a loop on this thread with `backend`, runs
  /// `body` on it until it returns (see ``runUntilComplete(_:)``, also for
  /// the ``TinyAsyncError/deadlocked`` it throws when `body` waits for
  /// what cannot come), and closes the loop. Inside, ``EventLoop/current``
  /// is that loop. Called inside a running loop, it stops the program (as
  /// asyncio raises "asyncio.run() cannot be called from a running event
  /// loop").
  ///
  /// Create the state the tasks share inside `body`, not in top-level
  /// code: top-level variables belong to the main actor, and a closure
  /// given to ``spawn(name:isolation:_:)`` that captures one fails to
  /// compile ("non-Sendable type ... cannot exit main actor-isolated
  /// context").
  ///
  /// ```swift
  /// let total = try EventLoop.run {
  ///     let a = EventLoop.current!.spawn { try await sleep(for: .milliseconds(30)); return 1 }
  ///     let b = EventLoop.current!.spawn { try await sleep(for: .milliseconds(10)); return 2 }
  ///     let (x, y) = try await gather(a, b)
  ///     return x + y
  /// }
  /// ```
  public static func run<Value>(
    backend: Backend = .automatic,
    _ body: sending @escaping () async throws -> Value
  ) throws -> Value {
    checkNotNested("EventLoop.run")
    let loop = try EventLoop(backend: backend)
    return try loop.runMain("EventLoop.run", body)
  }
}
