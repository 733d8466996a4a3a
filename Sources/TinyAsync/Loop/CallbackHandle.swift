/// A closure queued with ``EventLoop/callSoon(_:)``; cancel it before it
/// runs to drop it unrun (asyncio's `Handle`).
///
/// Loop-confined like its loop. A handle is the closure's place in the
/// loop's ready queue, so making one allocates nothing; cancelling
/// releases the closure and everything it captured at once, O(1), and its
/// place is skipped when its turn comes. Copies refer to the same call.
///
/// ```swift
/// let loop = try EventLoop()
/// let greeting = loop.callSoon { print("never printed") }
/// greeting.cancel()
/// try loop.runUntilIdle()
/// ```
public struct CallbackHandle {
  let queue: ReadyQueue
  let seq: UInt64

  /// Cancels the call. Returns `true` if it was still queued (it will now
  /// never run), `false` if it already ran or was cancelled. Cancelling
  /// after the loop is gone is allowed and returns `false`.
  @discardableResult
  public func cancel() -> Bool {
    queue.checkThread("CallbackHandle.cancel")
    return queue.cancel(seq)
  }

  /// `true` until the closure starts or the call is cancelled.
  public var isPending: Bool {
    queue.checkThread("CallbackHandle.isPending")
    return queue.isPending(seq)
  }
}

@available(*, unavailable, message: "a CallbackHandle belongs to its loop's thread")
extension CallbackHandle: Sendable {}
