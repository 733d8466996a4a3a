internal import CLoop

/// A closure scheduled with `callLater`, and the C timer the loop's heap
/// links. (`callSoon` closures need no box: they wait in the
/// ``ReadyQueue``.)
///
/// Ownership, in one place:
/// - The box owns its C timer (``Pinned`` heap memory), so the timer lives
///   exactly as long as the box.
/// - While scheduled, the box is on its loop's list of live boxes, which
///   holds the one strong reference the scheduling needs; the C node's `arg`
///   is the box, unretained. Running or cancelling takes it off the list and
///   drops the closure; the loop's `deinit` cancels whatever is left, so no
///   closure leaks and the C loop never points at freed memory.
final class CallbackBox {
  /// The closure, until it runs or is cancelled.
  @exclusivity(unchecked) var body: (() -> Void)?
  private let node = Pinned(cloop_timer())
  /// Valid while `isLinked`: the loop's `deinit` unlinks every box first.
  unowned(unsafe) let loop: EventLoop

  // The loop's list of live boxes (intrusive, doubly linked, O(1) both ways).
  @exclusivity(unchecked) var next: CallbackBox?
  @exclusivity(unchecked) unowned(unsafe) var prev: CallbackBox?
  @exclusivity(unchecked) var isLinked = false

  init(loop: EventLoop, body: @escaping () -> Void) {
    self.loop = loop
    self.body = body
    cloop_timer_init(node.pointer, callbackBoxFired, Unmanaged.passUnretained(self).toOpaque())
  }

  deinit {
    // Not linked means the C loop no longer holds the node (it ran, was
    // cancelled, or the loop cancelled it before freeing itself).
    ensure(!isLinked, "CallbackBox freed while its loop still links it")
  }

  /// The node as a timer, for `cloop_call_later`.
  var timer: UnsafeMutablePointer<cloop_timer> { node.pointer }

  /// Takes the timer off the heap and drops its closure. Returns false if
  /// it already ran or was cancelled. Loop thread only.
  @discardableResult
  func cancel() -> Bool {
    guard isLinked else { return false }
    _ = cloop_timer_cancel(loop.cLoop, timer)
    loop.unlink(self)
    // Release the closure only now, when the loop's state is consistent:
    // its captures' deinits may schedule more work on this loop.
    let dropped = body.take()
    _ = consume dropped
    return true
  }

  /// Called by the C loop: the timer is off the heap and the loop
  /// will not touch it again, so the box may go away once this returns.
  fileprivate func fire() {
    loop.unlink(self)
    let body = self.body.take()
    body?()
  }
}

/// The one C callback for every box; `arg` is the box, unretained.
private let callbackBoxFired: cloop_fn = { arg in
  // Holding `box` keeps it alive through the call even though unlinking
  // drops the list's reference.
  let box = Unmanaged<CallbackBox>.fromOpaque(arg!).takeUnretainedValue()
  box.fire()
}
