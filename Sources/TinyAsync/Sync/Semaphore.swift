internal import CLoop

/// A count of permits that tasks and fibers take and give back (asyncio's
/// `Semaphore`): ``acquire()-99ao5`` takes one, waiting while none is free;
/// ``release()`` gives one back, straight to the first waiter if any.
///
/// Waiters are served in the order they began to wait, async tasks and
/// fibers in one FIFO (see `SyncWait.swift`), and one that comes later
/// cannot take a released permit first. A waiter that is cancelled, or
/// whose ``withTimeout(_:_:)`` expires, leaves the queue and throws; a
/// permit handed to it in that moment goes on to the next, never lost.
/// ``release()`` may be called by anyone on the loop's thread, and is not
/// bounded by the initial value (asyncio's `Semaphore`, not
/// `BoundedSemaphore`). A semaphore belongs to its loop's thread (it is
/// not `Sendable`).
///
/// ```swift
/// try EventLoop.run {
///     let loop = EventLoop.current!
///     let slots = Semaphore(value: 2)  // at most two downloads at once
///     let jobs = (0..<5).map { i in
///         loop.spawn {
///             try await slots.acquire()
///             defer { slots.release() }
///             try await sleep(for: .milliseconds(10))
///             return i
///         }
///     }
///     for job in jobs { _ = try await job.value }  // about 30 ms in all
/// }
/// ```
public final class Semaphore {
  /// The loop it belongs to.
  public let loop: EventLoop
  /// The C semaphore (waiters link into it: it never moves).
  private let record = Pinned(cloop_semaphore())
  var cSemaphore: UnsafeMutablePointer<cloop_semaphore> { record.pointer }

  /// A semaphore of `loop` (default: the loop running on this thread) with
  /// `value` permits free (`value >= 0`).
  public init(value: Int = 1, on loop: EventLoop? = nil) {
    ensure(value >= 0, "Semaphore(value: \(value)): the value cannot be negative")
    self.loop = loop ?? EventLoop.running(for: "Semaphore()")
    self.loop.checkThread("Semaphore()")
    cloop_semaphore_init(cSemaphore, value)
  }

  deinit {
    ensure(cloop_waiting(&cSemaphore.pointee.waiters) == 0, "a Semaphore went away while tasks wait on it")
  }

  /// The permits free now (0 while anyone waits).
  public var value: Int {
    loop.checkThread("Semaphore.value")
    return cloop_semaphore_value(cSemaphore)
  }

  /// Takes a permit, waiting while none is free. Returns at once if one is
  /// (nobody can be waiting then).
  ///
  /// - Throws: ``TinyAsyncError/cancelled`` if the task is cancelled while
  ///   it waits, ``TinyAsyncError/timedOut`` when an enclosing
  ///   ``withTimeout(_:_:)`` expires; then it took no permit.
  public func acquire() async throws(TinyAsyncError) {
    loop.checkThread("Semaphore.acquire()")
    if cloop_semaphore_try_acquire(cSemaphore) == 0 { return }
    _ = try await SyncWait(loop: loop, .semaphoreAcquire(cSemaphore)).wait().get()
  }

  /// The fiber form of ``acquire()``: parks the calling fiber while no
  /// permit is free. Throws ``TinyAsyncError/cancelled`` if the fiber is
  /// (or was) cancelled, ``TinyAsyncError/timedOut`` in an expired
  /// ``withTimeout(_:_:)``. Outside a fiber it stops the program.
  @available(*, noasync, message: "in async code, use try await semaphore.acquire()")
  public func acquire() throws(TinyAsyncError) {
    loop.checkThread("Semaphore.acquire()")
    let s = cSemaphore
    try fiberCall("Semaphore.acquire()") { cloop_semaphore_acquire(s) }
  }

  /// Takes a permit if one is free; returns `false` if none is.
  public func tryAcquire() -> Bool {
    loop.checkThread("Semaphore.tryAcquire()")
    return cloop_semaphore_try_acquire(cSemaphore) == 0
  }

  /// Gives a permit back: to the first waiter if any, else to the free
  /// count. Any code on the loop's thread: async, a fiber, a callback.
  public func release() {
    loop.checkThread("Semaphore.release()")
    cloop_semaphore_release(cSemaphore)
  }
}

@available(*, unavailable, message: "a Semaphore belongs to its loop's thread")
extension Semaphore: Sendable {}
