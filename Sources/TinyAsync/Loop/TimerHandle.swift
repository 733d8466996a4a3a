/// A closure scheduled with ``EventLoop/callLater(_:_:)``; cancel it
/// before it fires to drop it unrun (asyncio's `TimerHandle`).
///
/// Loop-confined like its loop. Cancelling removes the timer from the
/// loop's heap at once, O(log n), and releases the closure and everything
/// it captured. Copies of a handle refer to the same timer.
///
/// ```swift
/// let loop = try EventLoop()
/// let timeout = loop.callLater(.seconds(5)) { print("too slow") }
/// loop.callSoon { timeout.cancel() }  // answered in time
/// try loop.runUntilIdle()                      // returns at once: nothing left
/// ```
public struct TimerHandle {
  let box: CallbackBox

  /// Cancels the timer. Returns `true` if it was still pending (it will now
  /// never run), `false` if it already ran or was cancelled.
  /// Cancelling after the loop is gone is allowed and returns `false`.
  @discardableResult
  public func cancel() -> Bool {
    box.cancel()
  }

  /// `true` until the timer's closure starts or the timer is cancelled.
  public var isPending: Bool {
    box.isLinked
  }
}

@available(*, unavailable, message: "a TimerHandle belongs to its loop's thread")
extension TimerHandle: Sendable {}
