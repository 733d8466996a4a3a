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
      readyQueue.push(job)
    } else {
      let accepted = threadSafeHandle.queue.enqueue(.job(job))
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
  /// `run_until_complete`. Then cancels the tasks it ``spawn(name:_:)``ed
  /// that are still running and runs the loop until they have ended, so
  /// none is left behind.
  ///
  /// Every step of `body`, and of the tasks it starts here, runs on this
  /// thread. While `body` waits, the loop waits too — also for work that
  /// only another thread can bring (a ``ThreadSafeHandle`` call, a job
  /// resumed elsewhere), so, as in asyncio, a body that waits for nothing
  /// that can happen never returns.
  ///
  /// ```swift
  /// let loop = try EventLoop()
  /// let answer = try loop.runUntilComplete {
  ///     try await sleep(for: .milliseconds(10))
  ///     return 42
  /// }
  /// ```
  /// Call it on the loop's thread, not from inside the loop's own callbacks.
  public func runUntilComplete<Value>(
    _ body: sending @escaping () async throws -> Value
  ) throws -> Value {
    checkThread("EventLoop.runUntilComplete")
    let outcome = Outcome<Value>()
    cloop_ref(cLoop)  // the main task may wait on other threads
    let loop = self
    let body = LoopThreadOnly(body)  // see `spawn(name:_:)`
    _ = Task(name: "main", executorPreference: self) {
      do {
        outcome.result = .success(try await body.value())
      } catch {
        outcome.result = .failure(error)
      }
      cloop_unref(loop.cLoop)
      cloop_stop(loop.cLoop)
    }
    while outcome.result == nil {
      let rc = cloop_run(cLoop)
      if rc < 0 { throw TinyAsyncError(code: rc) }
    }
    try finishSpawned()
    return try outcome.result!.get()
  }

  /// asyncio's `run`: makes a loop on this thread with `backend`, runs
  /// `body` on it until it returns (see ``runUntilComplete(_:)``), and
  /// closes the loop. Inside, ``EventLoop/current`` is that loop.
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
    let loop = try EventLoop(backend: backend)
    return try loop.runUntilComplete(body)
  }
}
