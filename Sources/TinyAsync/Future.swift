internal import CLoop
import Logging

/// A value that arrives later, completed once from the loop's thread with a
/// value, an error or a cancellation (asyncio's `Future`).
///
/// Any number of tasks may await ``value`` (and fibers call ``get()``);
/// completing wakes them in the order they began to wait. A task waiting
/// is a Swift task parked on the loop: cancelling that Swift task makes its
/// wait throw ``TinyAsyncError/cancelled`` and leaves the future alone.
/// From another thread, complete a future through the loop's
/// ``EventLoop/threadSafeHandle``.
///
/// A future that failed and whose error nobody read is reported (logged as
/// a warning, label `TinyAsync`) when it goes away, as asyncio reports an
/// exception that was never retrieved.
///
/// ```swift
/// try EventLoop.run {
///     let loop = EventLoop.current!
///     let answer = Future<Int>(on: loop)
///     loop.callLater(.milliseconds(10)) { answer.succeed(42) }
///     print(try await answer.value)  // 42, after 10 ms
/// }
/// ```
public final class Future<Value> {
  /// The loop it belongs to.
  public let loop: EventLoop
  private var result: Result<Value, any Error>?
  private var retrieved = false
  /// Waiting tasks, FIFO; the first inline so one waiter costs no array.
  private var firstWaiter: FutureWait<Value>?
  private var moreWaiters: [FutureWait<Value>] = []
  /// Internal observers (spawn's bookkeeping, gather), run on completion.
  private var observers: [(Bool) -> Void] = []
  /// The C future fibers park on, made when the first fiber waits.
  private var cFuture: UnsafeMutablePointer<cloop_future>?

  /// A pending future of `loop` (default: the loop running on this thread).
  public init(on loop: EventLoop? = nil) {
    self.loop = loop ?? EventLoop.running(for: "Future()")
    self.loop.checkThread("Future()")
  }

  deinit {
    if let cFuture { cFuture.deallocate() }
    if case .failure(let error)? = result, !retrieved, !Self.isCancellation(error) {
      logger.warning("Future<\(Value.self)> failed and its error was never retrieved: \(error)")
    }
  }

  /// `true` once completed (with a value, an error or a cancellation).
  public var isDone: Bool { result != nil }

  /// `true` if completed by ``cancel()``.
  public var isCancelled: Bool {
    if case .failure(let error)? = result { return Self.isCancellation(error) }
    return false
  }

  /// Completes the future with `value`. Returns `false` (and does nothing)
  /// if it was already complete, e.g. cancelled first. Loop thread only.
  @discardableResult
  public func succeed(_ value: Value) -> Bool {
    complete(.success(value))
  }

  /// Completes the future with `error`; awaiting it throws `error`.
  @discardableResult
  public func fail(_ error: any Error) -> Bool {
    complete(.failure(error))
  }

  /// Completes the future as cancelled: awaiting it throws
  /// ``TinyAsyncError/cancelled``. Returns `false` if it was complete.
  @discardableResult
  public func cancel() -> Bool {
    complete(.failure(TinyAsyncError.cancelled))
  }

  /// The value, once the future has one: waits (parking this task on the
  /// loop) until then. Throws the error it failed with,
  /// ``TinyAsyncError/cancelled`` if it (or the waiting task) was
  /// cancelled, ``TinyAsyncError/timedOut`` in an expired ``withTimeout(_:_:)``.
  public var value: Value {
    get async throws { try await get() }
  }

  /// The same as ``value``.
  public func get() async throws -> Value {
    if let result {
      retrieved = true
      return try result.get()
    }
    loop.checkThread("Future.value")
    return try await FutureWait(future: self).wait().get()
  }

  // MARK: Internal

  /// Runs `observer(succeeded)` when the future completes (at once if it
  /// has). Observers run before waiting tasks are woken.
  func whenComplete(_ observer: @escaping (Bool) -> Void) {
    if let result {
      observer(Self.succeeded(result))
    } else {
      observers.append(observer)
    }
  }

  /// The outcome, once done; marks it retrieved.
  func takeResult() -> Result<Value, any Error>? {
    if result != nil { retrieved = true }
    return result
  }

  /// The outcome, without marking it retrieved.
  var peekResult: Result<Value, any Error>? { result }

  /// The C future a fiber parks on; completed together with this one.
  func cFutureForFiber() -> UnsafeMutablePointer<cloop_future> {
    if let cFuture { return cFuture }
    let f = UnsafeMutablePointer<cloop_future>.allocate(capacity: 1)
    f.initialize(to: cloop_future())
    cloop_future_init(f, loop.cLoop)
    if result != nil { _ = cloop_future_set_result(f, 0) }
    cFuture = f
    return f
  }

  /// Adds a waiting task, or finishes it at once if the future completed
  /// while it was on its way to park.
  func addWaiter(_ wait: FutureWait<Value>) {
    if let result {
      retrieved = true
      wait.finish(result)
    } else if firstWaiter == nil {
      firstWaiter = wait
    } else {
      moreWaiters.append(wait)
    }
  }

  func removeWaiter(_ wait: FutureWait<Value>) {
    if firstWaiter === wait {
      firstWaiter = moreWaiters.isEmpty ? nil : moreWaiters.removeFirst()
    } else if let i = moreWaiters.firstIndex(where: { $0 === wait }) {
      moreWaiters.remove(at: i)
    }
  }

  private func complete(_ result: Result<Value, any Error>) -> Bool {
    loop.checkThread("Future completion")
    guard self.result == nil else { return false }
    self.result = result
    if let cFuture { _ = cloop_future_set_result(cFuture, 0) }
    if !observers.isEmpty {
      let ok = Self.succeeded(result)
      let observers = self.observers
      self.observers = []
      for observer in observers { observer(ok) }
    }
    if let first = firstWaiter {
      firstWaiter = nil
      retrieved = true
      first.finish(result)
      if !moreWaiters.isEmpty {
        let more = moreWaiters
        moreWaiters = []
        for wait in more { wait.finish(result) }
      }
    }
    return true
  }

  private static func succeeded(_ result: Result<Value, any Error>) -> Bool {
    if case .success = result { return true }
    return false
  }

  static func isCancellation(_ error: any Error) -> Bool {
    (error as? TinyAsyncError) == .cancelled || error is CancellationError
  }
}

@available(*, unavailable, message: "a Future belongs to its loop's thread")
extension Future: Sendable {}

/// A task waiting for a future's value.
final class FutureWait<Value>: LoopWait<Value, any Error>, @unchecked Sendable {
  unowned(unsafe) let future: Future<Value>

  init(future: Future<Value>) {
    self.future = future
    super.init(loop: future.loop)
  }

  /// (`future` is alive: the waiting task holds it.)
  override func start() {
    future.addWaiter(self)
  }

  override func stop() {
    future.removeWaiter(self)
  }
}

let logger = Logger(label: "TinyAsync")
