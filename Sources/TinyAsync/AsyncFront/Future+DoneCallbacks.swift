extension Future {
  /// Calls `callback` with this future once it is complete (asyncio's
  /// `add_done_callback`): at completion the call is queued on the loop
  /// with ``EventLoop/callSoon(_:)``, so it runs in a later step, never
  /// inside ``succeed(_:)`` or ``fail(_:)``; on a future that is already
  /// complete it is queued at once. Callbacks run in the order they were
  /// added, ahead of the tasks the same completion wakes. Read the outcome
  /// in it with ``result`` or `try future.get()`; either counts as
  /// retrieving an error. Loop thread only.
  ///
  /// ```swift
  /// let reply = Future<String>()
  /// reply.onDone { future in print("reply:", future.result!) }
  /// reply.succeed("pong")  // prints in the next iteration
  /// ```
  ///
  /// - Returns: a handle whose `cancel()` removes the callback (asyncio's
  ///   `remove_done_callback`); ignore it if you won't.
  @discardableResult
  public func onDone(_ callback: @escaping (Future<Value>) -> Void) -> DoneCallbackHandle {
    loop.checkThread("Future.onDone")
    // The handle keeps the callback, type-erased so that it is one class
    // for every Value; cancelling drops it (and what it captured) at once.
    let handle = DoneCallbackHandle(loop: loop) { callback(unsafeDowncast($0, to: Future<Value>.self)) }
    // `unowned`: observers run only from `completed`, while the future is
    // alive; the queued call then holds it until it has run.
    whenComplete { [unowned self, handle] _ in handle.schedule(self) }
    return handle
  }

  /// The outcome once complete, `nil` while pending: `.success(value)`, or
  /// `.failure` with the error (``TinyAsyncError/cancelled`` for a
  /// cancelled future). Reading a failure counts as retrieving it. Loop
  /// thread only.
  public var result: Result<Value, any Error>? {
    loop.checkThread("Future.result")
    guard isComplete else { return nil }
    return Result { try takeValue() }
  }
}

/// A callback added with ``Future/onDone(_:)``: ``cancel()`` it to remove
/// it. Loop-confined like its future.
///
/// ```swift
/// let reply = Future<String>()
/// let log = reply.onDone { _ in print("never printed") }
/// log.cancel()
/// reply.succeed("pong")
/// ```
public final class DoneCallbackHandle {
  private let loop: EventLoop
  /// The user's callback; `nil` once it has run or was cancelled.
  private var body: ((AnyObject) -> Void)?
  /// Its place in the ready queue, once the future completed.
  private var queued: CallbackHandle?

  init(loop: EventLoop, _ body: @escaping (AnyObject) -> Void) {
    self.loop = loop
    self.body = body
  }

  /// The future completed: queue the call.
  func schedule(_ future: AnyObject) {
    guard body != nil else { return }
    queued = loop.callSoon { [self] in
      queued = nil
      let body = self.body.take()
      body?(future)
    }
  }

  /// Removes the callback. Returns `true` if it had not run yet (it now
  /// never will), `false` if it ran or was removed before.
  @discardableResult
  public func cancel() -> Bool {
    loop.checkThread("DoneCallbackHandle.cancel")
    guard body != nil else { return false }
    body = nil
    queued?.cancel()
    queued = nil
    return true
  }

  /// `true` until the callback runs or is removed.
  public var isPending: Bool {
    loop.checkThread("DoneCallbackHandle.isPending")
    return body != nil
  }
}

@available(*, unavailable, message: "a DoneCallbackHandle belongs to its loop's thread")
extension DoneCallbackHandle: Sendable {}
