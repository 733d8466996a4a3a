/// The one way to reach an ``EventLoop`` from another thread: a `Sendable`
/// value whose ``call(_:)-(()->Void)`` queues a closure to run on the loop's
/// thread (asyncio's `call_soon_threadsafe`) and wakes the loop.
///
/// Calls from one thread run in the order they were made; calls from
/// several threads interleave. A handle may outlive its loop: once the loop
/// is gone, `call` returns `false` and drops the closure. Pending calls do
/// not keep ``EventLoop/runUntilIdle()`` going by themselves; hold
/// ``EventLoop/ref()`` while other threads may still call.
///
/// ```swift
/// let loop = try EventLoop()
/// let handle = loop.threadSafeHandle
/// loop.ref()  // keep run() going until the worker has answered
/// Thread.detachNewThread {  // Foundation; any other thread will do
///     let answer = 6 * 7
///     handle.call { loop in
///         print("on the loop thread: \(answer)")
///         loop.unref()
///     }
/// }
/// try loop.runUntilIdle()  // returns after the answer has been printed
/// ```
public struct ThreadSafeHandle: Sendable {
  let queue: ThreadSafeQueue

  /// Queues `body` to run on the loop's thread in a coming iteration.
  /// Any thread. Returns `false` (and drops `body`) if the loop is gone.
  @discardableResult
  public func call(_ body: @escaping @Sendable () -> Void) -> Bool {
    queue.enqueue(.plain(body))
  }

  /// Like ``call(_:)-(()->Void)``, and hands `body` the loop it runs on, so
  /// it can use the loop (which is not `Sendable`) without capturing it.
  @discardableResult
  public func call(_ body: @escaping @Sendable (EventLoop) -> Void) -> Bool {
    queue.enqueue(.withLoop(body))
  }
}
