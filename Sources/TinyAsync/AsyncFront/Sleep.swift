internal import CLoop

/// Suspends the calling task for `duration` on the running loop's timer
/// heap (asyncio's `sleep`); zero or negative yields to the loop once, so
/// the tasks and callbacks already queued run first (asyncio's `sleep(0)`).
///
/// Use it instead of Swift's `Task.sleep` in code on an ``EventLoop``:
/// `Task.sleep` arms a Dispatch timer on another thread even on a custom
/// executor. (Glibc's `sleep(_:)` is a different function and still blocks
/// the thread; this one is `sleep(for:)`. In a fiber the synchronous
/// overload of the same name runs.)
///
/// - Throws: ``TinyAsyncError/cancelled`` when the task is cancelled while
///   it sleeps, ``TinyAsyncError/timedOut`` when an enclosing
///   ``withTimeout(_:_:)`` expires.
///
/// ```swift
/// try EventLoop.run {
///     let start = EventLoop.current!.now
///     try await sleep(for: .milliseconds(50))
///     print(EventLoop.current!.now - start)  // about 50 ms
/// }
/// ```
public nonisolated(nonsending) func sleep(for duration: Duration) async throws(TinyAsyncError) {
  let loop = EventLoop.running(for: "sleep(for:)")
  // As in the fiber form: `attoseconds` (an Int128) is inlined here, while
  // `.zero` and Duration's `<=` are calls into libswiftCore.
  if duration.attoseconds <= 0 {
    try await yieldToLoop(loop)
    return
  }
  try await SleepWait(loop: loop, delay: duration.saturatingNanoseconds).wait().get()
}

/// sleep(for: .zero): the task parks in the loop's ready queue and resumes
/// in the next iteration at its place there: after what was queued before
/// it, before what is queued after it (asyncio's `sleep(0)`). Without the timer (an allocation, a
/// heap push and pop), the wait object and the cancellation handler (two
/// trips through the task's status lock) a spawn-and-yield costs half.
/// Nothing interrupts the yield in flight, so the cancellation and the
/// timeout it would have seen are checked on the way out, and it throws
/// as an interrupted sleep does.
nonisolated(nonsending) func yieldToLoop(_ loop: EventLoop) async throws(TinyAsyncError) {
  try checkInterruption()
  await withUnsafeContinuation { (continuation: UnsafeContinuation<Void, Never>) in
    loop.readyQueue.yield(continuation)
  }
  try checkInterruption()
}

/// Throws what a wait starting now would: cancelled, or timed out.
private func checkInterruption() throws(TinyAsyncError) {
  if let error = TimeoutScope.pendingInterruption() { throw error }
}
