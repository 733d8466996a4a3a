internal import CLoop

/// A task asleep: one timer on the loop's heap.
final class SleepWait: LoopWait<Void, TinyAsyncError>, @unchecked Sendable {
  private let timer = Pinned(cloop_timer())
  private let delay: Int64

  init(loop: EventLoop, delay: Int64) {
    self.delay = delay
    super.init(loop: loop)
    cloop_timer_init(timer.pointer, sleepWaitFired, Unmanaged.passUnretained(self).toOpaque())
  }

  override func start() {
    // The heap holds the timer, not this object: retain it until it fires
    // or is stopped.
    _ = Unmanaged.passRetained(self)
    let rc = cloop_call_later(loop.cLoop, timer.pointer, delay)
    ensure(rc == 0, "cloop_call_later: \(TinyAsyncError(code: rc))")
  }

  override func stop() {
    if cloop_timer_cancel(loop.cLoop, timer.pointer) != 0 {
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
