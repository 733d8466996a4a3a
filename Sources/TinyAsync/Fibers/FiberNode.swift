internal import CLoop

/// A fiber's bookkeeping, on the loop's list of live spawned work (with the
/// async front's tasks) until its body returns, so that ``EventLoop/runFiberUntilComplete(_:)``
/// and ``EventLoop/runUntilComplete(_:)`` cancel and finish what is left.
///
/// The C task holds one reference while its body may still run; this object
/// holds one on the C task (its future serves `gather`) until it goes. It
/// keeps its loop alive through its future, so the C task is released
/// before the loop is freed.
///
/// A class with one subclass, ``FiberState``, rather than a protocol: the
/// C task's entry (`fiberEntry`) takes this object back from a `void *`,
/// which needs one concrete class (a protocol would cost a dynamic cast
/// per fiber), and the loop's list links it as a ``SpawnedNode``. The
/// subclass adds what needs the body's `Value`: the body, the ``Future``,
/// and ``runUntilIdle()``.
@usableFromInline
class FiberNode: SpawnedNode, @unchecked Sendable {  // loop thread only
  let loop: EventLoop
  /// Set once, right after the C task is spawned.
  var cTask: OpaquePointer?
  private let givenName: String?
  private let number: Int
  /// The body has begun running (or has been skipped, if cancelled first).
  final var started = false
  /// The body has returned or thrown; the result is in the future.
  final var finished = false
  final var cancelRequested = false

  @inline(__always)  // into FiberState's (otherwise two calls more per spawn)
  init(loop: EventLoop, name: String?, number: Int) {
    self.loop = loop
    givenName = name
    self.number = number
    super.init()
  }

  deinit {
    if let cTask { cloop_task_release(cTask) }
  }

  final var name: String { givenName ?? "fiber-\(number)" }

  /// The C task's own future: complete once the C task has ended (just
  /// after the Swift result is in).
  final var cTaskFuture: UnsafeMutablePointer<cloop_future> { cloop_task_future(cTask!) }

  /// Runs the body on the fiber's stack: ``FiberState``'s, the one
  /// subclass, which knows the body's `Value`.
  func run() { misuse("internal error: a FiberNode that is not a FiberState was spawned") }

  /// Requests cancellation: the suspension the fiber is parked in (or its
  /// next one) throws ``TinyAsyncError/cancelled``; a fiber that has not
  /// started never runs its body. Loop thread only.
  override final func cancel() {
    loop.checkThread("FiberHandle.cancel")
    guard !finished else { return }
    cancelRequested = true
    if started, let cTask { _ = cloop_task_cancel(cTask) }
  }
}
