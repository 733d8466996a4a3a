internal import CLoop

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
    ensure(rc == 0, "cloop_call_later: \(TinyAsyncError(code: rc))")
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
