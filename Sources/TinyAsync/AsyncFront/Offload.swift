internal import CLoop

// Work off the loop (asyncio's `to_thread` / `run_in_executor`): a blocking
// closure runs on the loop's work pool (the C core's `cloop_queue_work`, a
// bounded pool of threads shared by every loop) while only the caller
// waits; its value comes back on the loop's thread.
//
// A caller that stops waiting -- cancelled, or timed out -- throws at once.
// The closure cannot be stopped once it runs (a blocking call has no safe
// way out), so the request is abandoned (`cloop_work_abandon`): a closure
// not yet started never runs; a running one finishes on its thread, and
// its value is dropped there. Nothing of the caller's is held by then: the
// job keeps only the closure and its result box.

/// One request to the pool: the C record, and what runs on each side.
private final class OffloadJob: @unchecked Sendable {
  /// The C request; on the heap, as the pool and the loop point at it.
  private let record = Pinned(cloop_work())
  var work: UnsafeMutablePointer<cloop_work> { record.pointer }
  /// Runs on a pool thread (the closure and the result box are Sendable).
  let run: @Sendable () -> Void
  /// Runs on the loop's thread when the result is in; loop thread only,
  /// cleared when the caller gives up, so the job holds no waiter then.
  var done: (() -> Void)?

  init(run: @escaping @Sendable () -> Void) {
    self.run = run
  }

  /// Queues the job on the loop's pool; the pool holds one reference until
  /// done (or drop) has run. Returns the C result.
  func queue(on loop: EventLoop) -> Int32 {
    let retained = Unmanaged.passRetained(self)
    let rc = cloop_queue_work(loop.cLoop, work, offloadRun, offloadDone, retained.toOpaque())
    if rc < 0 { retained.release() }
    return rc
  }

  /// Gives up waiting: the job goes on (or never starts) without us.
  func abandon() {
    done = nil
    _ = cloop_work_abandon(work, offloadDrop)
  }
}

/// The closure's outcome, written on the pool thread and read on the
/// loop's after the C core's thread-safe hand-back (which orders the two).
private final class OffloadResult<Value: Sendable>: @unchecked Sendable {
  var value: Value?
  var error: (any Error)?
}

private let offloadRun: cloop_work_fn = { work in
  Unmanaged<OffloadJob>.fromOpaque(work!.pointee.data).takeUnretainedValue().run()
}

private let offloadDone: cloop_work_fn = { work in
  let job = Unmanaged<OffloadJob>.fromOpaque(work!.pointee.data).takeRetainedValue()
  let done = job.done
  job.done = nil  // it holds the waiter: no cycle left behind
  done?()
}

/// An abandoned job's end, on the pool thread (or the loop's): only the
/// pool's reference goes.
private let offloadDrop: cloop_work_fn = { work in
  Unmanaged<OffloadJob>.fromOpaque(work!.pointee.data).release()
}

/// The task's wait for one job.
private final class OffloadWait: LoopWait<Void, TinyAsyncError>, @unchecked Sendable {
  let job: OffloadJob

  init(loop: EventLoop, job: OffloadJob) {
    self.job = job
    super.init(loop: loop)
  }

  override func start() {
    job.done = { [self] in finish(.success(())) }
    let rc = job.queue(on: loop)
    if rc < 0 {
      job.done = nil
      finish(.failure(TinyAsyncError(code: rc)))
    }
  }

  override func stop() {
    job.abandon()
  }
}

/// Runs `body` on a thread of the loop's work pool and returns what it
/// returned, or rethrows what it threw (asyncio's `to_thread`); only the
/// calling task waits, the loop goes on. For a blocking call -- a slow C
/// library, `getaddrinfo`, a file read on epoll -- that would otherwise stall
/// every connection on the loop.
///
/// The pool is the C core's, shared by every loop: `$CLOOP_POOL_THREADS`
/// threads (default 4), started as work comes; jobs start in the order they
/// were submitted. `body` runs on another thread, so it must be `@Sendable`
/// and so must its value.
///
/// If the task is cancelled, or an enclosing ``withTimeout(_:_:)`` expires,
/// while it waits, this throws at once: a `body` that has not started never
/// runs; one that is running finishes on its thread and its value is
/// dropped.
///
/// - Throws: what `body` throws; ``TinyAsyncError/cancelled``,
///   ``TinyAsyncError/timedOut``. (Untyped: `body`'s error is the caller's.)
///
/// ```swift
/// try EventLoop.run {
///     let digest = try await offload { expensiveHash(of: bytes) }
///     print(digest)
/// }
/// ```
public nonisolated(nonsending) func offload<Value: Sendable>(
  _ body: @escaping @Sendable () throws -> Value
) async throws -> Value {
  let loop = EventLoop.running(for: "offload(_:)")
  loop.checkThread("offload(_:)")
  let result = OffloadResult<Value>()
  let job = OffloadJob {
    do { result.value = try body() } catch { result.error = error }
  }
  try await OffloadWait(loop: loop, job: job).wait().get()
  if let error = result.error { throw error }
  return result.value!
}

/// The fiber form of ``offload(_:)``: runs `body` on the loop's work pool
/// while only the calling fiber waits. Cancelling the fiber, or an expired
/// ``withTimeout(_:_:)``, ends the wait at once with
/// ``TinyAsyncError/cancelled`` / ``TinyAsyncError/timedOut``; the job is
/// then dropped as in the async form. Outside a fiber it stops the program.
///
/// ```swift
/// try EventLoop.runFiber {
///     let answer = try offload { 6 * 7 }  // on a pool thread
/// }
/// ```
@available(*, noasync, message: "in async code, use try await offload { ... }")
public func offload<Value: Sendable>(_ body: @escaping @Sendable () throws -> Value) throws -> Value {
  requireFiber("offload(_:)")
  let loop = EventLoop.running(for: "offload(_:)")
  let result = OffloadResult<Value>()
  let job = OffloadJob {
    do { result.value = try body() } catch { result.error = error }
  }
  // The fiber parks on a C future the job's done completes.
  let record = Pinned(cloop_future())
  let future = record.pointer
  cloop_future_init(future, loop.cLoop)
  job.done = { _ = cloop_future_set_result(future, 0) }
  let rc = job.queue(on: loop)
  if rc < 0 { throw TinyAsyncError(code: rc) }
  do {
    try fiberCall("offload(_:)") { cloop_await(future, nil) }
  } catch {
    job.abandon()
    throw error
  }
  if let error = result.error { throw error }
  return result.value!
}
