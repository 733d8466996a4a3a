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
  try await SleepWait(loop: loop, delay: duration.saturatingNanoseconds).wait().get()
}

/// A task asleep: one timer on the loop's heap.
final class SleepWait: LoopWait<Void, TinyAsyncError>, @unchecked Sendable {
  private let timer: UnsafeMutablePointer<cloop_timer>
  private let delay: Int64

  init(loop: EventLoop, delay: Int64) {
    self.delay = delay
    timer = .allocate(capacity: 1)
    timer.initialize(to: cloop_timer())
    super.init(loop: loop)
    cloop_timer_init(timer, sleepWaitFired, Unmanaged.passUnretained(self).toOpaque())
  }

  deinit {
    timer.deallocate()
  }

  override func start() {
    // The heap holds the timer, not this object: retain it until it fires
    // or is stopped.
    _ = Unmanaged.passRetained(self)
    let rc = cloop_call_later(loop.cLoop, timer, delay)
    precondition(rc == 0, "cloop_call_later: \(TinyAsyncError(code: rc))")
  }

  override func stop() {
    if cloop_timer_cancel(loop.cLoop, timer) != 0 {
      Unmanaged.passUnretained(self).release()
    }
  }

  fileprivate func fired() {
    finish(.success(()))
  }
}

private let sleepWaitFired: cloop_fn = { arg in
  let wait = Unmanaged<SleepWait>.fromOpaque(arg!).takeRetainedValue()
  wait.fired()
}
