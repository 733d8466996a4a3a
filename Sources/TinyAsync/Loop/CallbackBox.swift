internal import CLoop

/// A closure scheduled on a loop, and the C node the loop links.
///
/// Ownership, in one place:
/// - The box owns its C node (heap memory, freed in `deinit`), so the node
///   lives exactly as long as the box.
/// - While scheduled, the box is on its loop's list of live boxes, which
///   holds the one strong reference the scheduling needs; the C node's `arg`
///   is the box, unretained. Running or cancelling takes it off the list and
///   drops the closure; the loop's `deinit` cancels whatever is left, so no
///   closure leaks and the C loop never points at freed memory.
final class CallbackBox {
  enum Node {
    case handle(UnsafeMutablePointer<cloop_handle>)
    case timer(UnsafeMutablePointer<cloop_timer>)
  }

  /// The closure, until it runs or is cancelled.
  @exclusivity(unchecked) var body: (() -> Void)?
  let node: Node
  /// Valid while `isLinked`: the loop's `deinit` unlinks every box first.
  unowned(unsafe) let loop: EventLoop

  // The loop's list of live boxes (intrusive, doubly linked, O(1) both ways).
  @exclusivity(unchecked) var next: CallbackBox?
  @exclusivity(unchecked) unowned(unsafe) var prev: CallbackBox?
  @exclusivity(unchecked) var isLinked = false

  /// A box for `callSoon`; `isTimer` makes one for `callLater`.
  init(loop: EventLoop, isTimer: Bool, body: @escaping () -> Void) {
    self.loop = loop
    self.body = body
    if isTimer {
      let timer = UnsafeMutablePointer<cloop_timer>.allocate(capacity: 1)
      timer.initialize(to: cloop_timer())
      node = .timer(timer)
      cloop_timer_init(timer, callbackBoxFired, Unmanaged.passUnretained(self).toOpaque())
    } else {
      let handle = UnsafeMutablePointer<cloop_handle>.allocate(capacity: 1)
      handle.initialize(to: cloop_handle())
      node = .handle(handle)
      cloop_handle_init(handle, callbackBoxFired, Unmanaged.passUnretained(self).toOpaque())
    }
  }

  deinit {
    // Not linked means the C loop no longer holds the node (it ran, was
    // cancelled, or the loop cancelled it before freeing itself).
    ensure(!isLinked, "CallbackBox freed while its loop still links it")
    switch node {
    case .handle(let handle): handle.deallocate()
    case .timer(let timer): timer.deallocate()
    }
  }

  /// Takes the box off the ready ring or timer heap and drops its closure.
  /// Returns false if it already ran or was cancelled. Loop thread only.
  @discardableResult
  func cancel() -> Bool {
    guard isLinked else { return false }
    switch node {
    case .handle(let handle): _ = cloop_handle_cancel(loop.cLoop, handle)
    case .timer(let timer): _ = cloop_timer_cancel(loop.cLoop, timer)
    }
    loop.unlink(self)
    // Release the closure only now, when the loop's state is consistent:
    // its captures' deinits may schedule more work on this loop.
    let dropped = body.take()
    _ = consume dropped
    return true
  }

  /// Called by the C loop: the node is off the ring (or heap) and the loop
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
  // A callSoon box is nobody else's once it has run: keep it for the next
  // callSoon. (A timer's box may still be held by its TimerHandle.)
  if case .handle = box.node { box.loop.recycle(box) }
}
