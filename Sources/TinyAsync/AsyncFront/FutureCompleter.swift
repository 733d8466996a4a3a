/// A `Sendable` way for another thread to complete a ``Future``: it queues
/// the completion on the future's loop through its ``ThreadSafeHandle``
/// (the seeds' `loop.call_soon_threadsafe(fut.set_result, value)`), so the
/// future itself never leaves the loop's thread.
///
/// ```swift
/// try EventLoop.run {
///     let answer = Future<Int>()
///     let completer = answer.threadSafeCompleter
///     Thread.detachNewThread {          // or any other thread
///         completer.succeed(6 * 7)      // runs answer.succeed(42) on the loop
///     }
///     print(try await answer.value)     // 42
/// }
/// ```
public struct FutureCompleter<Value: Sendable>: Sendable {
  private let handle: ThreadSafeHandle
  private let future: LoopThreadOnly<Future<Value>>

  init(_ future: Future<Value>) {
    handle = future.loop.threadSafeHandle
    self.future = LoopThreadOnly(future)
  }

  /// Completes the future with `value` on its loop's thread, unless it is
  /// complete by then. Any thread. Returns `false` if the loop is gone.
  @discardableResult
  public func succeed(_ value: Value) -> Bool {
    let future = self.future
    return handle.call { future.value.succeed(value) }
  }

  /// Completes the future with `error` on its loop's thread, unless it is
  /// complete by then. Any thread. Returns `false` if the loop is gone.
  @discardableResult
  public func fail(_ error: any Error & Sendable) -> Bool {
    let future = self.future
    return handle.call { future.value.fail(error) }
  }

  /// Cancels the future on its loop's thread, unless it is complete by
  /// then. Any thread. Returns `false` if the loop is gone.
  @discardableResult
  public func cancel() -> Bool {
    let future = self.future
    return handle.call { future.value.cancel() }
  }
}

extension Future where Value: Sendable {
  /// A `Sendable` completer that other threads use to complete this future
  /// through its loop. Keeps the future alive until a completion runs.
  public var threadSafeCompleter: FutureCompleter<Value> {
    FutureCompleter(self)
  }
}
