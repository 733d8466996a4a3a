internal import CLoop
internal import Glibc
import Logging

/// A value that arrives later, completed once from the loop's thread with a
/// value, an error or a cancellation (asyncio's `Future`).
///
/// Any number of tasks may await ``value`` (and fibers call ``get()-94ox2``);
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
  // The outcome, kept without a type built from `Value`. Callers in other
  // modules reach this generic code unspecialized, and there every use of
  // a `Result<Value, _>` or `Optional<Value>` asks the runtime for that
  // type's metadata: a hash lookup under a lock, about 300 instructions.
  // With a `Result<Value, any Error>?` here, one create/complete/await
  // round made 20 of them (40% of its instructions, callgrind). A state,
  // an existential error and a pointer to the value need none; the cost is
  // one small allocation for the value.
  @exclusivity(unchecked) private var state = State.pending
  @exclusivity(unchecked) private var error: (any Error)?
  @exclusivity(unchecked) private var valueSlot: UnsafeMutablePointer<Value>?
  @exclusivity(unchecked) private var retrieved = false
  /// Waiting tasks, FIFO; the first inline so one waiter costs no array.
  /// (`FutureWait` is not generic either: it only learns that the future
  /// completed, and its task then reads the outcome from here.)
  @exclusivity(unchecked) private var firstWaiter: FutureWait?
  @exclusivity(unchecked) private var moreWaiters: [FutureWait] = []
  /// Internal observers (gather, fibers' bookkeeping), run on completion;
  /// the first inline, as most futures have one at most (an array would
  /// be one more allocation per gathered task).
  @exclusivity(unchecked) private var firstObserver: ((Bool) -> Void)?
  @exclusivity(unchecked) private var moreObservers: [(Bool) -> Void] = []
  /// The C future fibers park on, made when the first fiber waits.
  @exclusivity(unchecked) private var cFuture: UnsafeMutablePointer<cloop_future>?

  /// A pending future of `loop` (default: the loop running on this thread).
  public init(on loop: EventLoop? = nil) {
    self.loop = loop ?? EventLoop.running(for: "Future()")
    self.loop.checkThread("Future()")
  }

  private enum State: UInt8 { case pending, succeeded, failed }

  deinit {
    if let cFuture { free(cFuture) }
    if let valueSlot {
      valueSlot.deinitialize(count: 1)
      free(valueSlot)
    }
    reportUnretrieved(owner: "Future<\(Value.self)>")
  }

  /// `true` once completed (with a value, an error or a cancellation).
  public var isDone: Bool {
    loop.checkThread("Future.isDone")
    return state != .pending
  }

  /// ``isDone`` without the thread check, for this module's loop-side code.
  var isComplete: Bool { state != .pending }

  /// `true` if completed by ``cancel()``.
  public var isCancelled: Bool {
    loop.checkThread("Future.isCancelled")
    if let error { return Self.isCancellation(error) }
    return false
  }

  /// Completes the future with `value`. Returns `false` (and does nothing)
  /// if it was already complete, e.g. cancelled first. Loop thread only.
  @discardableResult
  public func succeed(_ value: Value) -> Bool {
    loop.checkThread("Future.succeed(_:)")
    guard state == .pending else { return false }
    let slot = mallocPointer(to: Value.self)
    slot.initialize(to: value)
    valueSlot = slot
    state = .succeeded
    completed(ok: true)
    return true
  }

  /// Completes the future with `error`; awaiting it throws `error`.
  @discardableResult
  public func fail(_ error: any Error) -> Bool {
    loop.checkThread("Future.fail(_:)")
    guard state == .pending else { return false }
    self.error = error
    state = .failed
    completed(ok: false)
    return true
  }

  /// Completes the future as cancelled: awaiting it throws
  /// ``TinyAsyncError/cancelled``. Returns `false` if it was complete.
  @discardableResult
  public func cancel() -> Bool {
    fail(TinyAsyncError.cancelled)
  }

  /// The value, once the future has one: waits (parking this task on the
  /// loop) until then. Throws the error it failed with,
  /// ``TinyAsyncError/cancelled`` if it (or the waiting task) was
  /// cancelled, ``TinyAsyncError/timedOut`` in an expired ``withTimeout(_:_:)``.
  public nonisolated(nonsending) var value: Value {
    get async throws { try await get() }
  }

  /// The same as ``value``.
  /// (`nonisolated(nonsending)`: no executor hop on the way in; see
  /// `LoopWait.wait()`.)
  public nonisolated(nonsending) func get() async throws -> Value {
    try await get("Future.value")
  }

  /// ``get()`` for the handles whose value is this future's: `operation`
  /// is the call a misuse message names (`TaskHandle.value`).
  nonisolated(nonsending) func get(_ operation: StaticString) async throws -> Value {
    loop.checkThread(operation)
    if state == .pending {
      // Returns once the future is complete; throws if the wait was
      // interrupted first (cancellation, timeout).
      try await FutureWait(future: self, loop: loop).wait().get()
    }
    return try takeValue()
  }

  // MARK: Internal

  /// Runs `observer(succeeded)` when the future completes (at once if it
  /// has). Observers run before waiting tasks are woken.
  func whenComplete(_ observer: @escaping (Bool) -> Void) {
    if state != .pending {
      observer(state == .succeeded)
    } else {
      if firstObserver == nil {
        firstObserver = observer
      } else {
        moreObservers.append(observer)
      }
    }
  }

  /// The value, or throws the error, of a complete future; marks it
  /// retrieved. (The fast path: no `Result<Value, _>`, see `state`.)
  func takeValue() throws -> Value {
    ensure(state != .pending, "Future: the outcome of a pending future was read")
    retrieved = true
    if let valueSlot { return valueSlot.pointee }
    throw error!
  }

  /// The error of a complete future that failed, marked retrieved; nil if
  /// it succeeded or is pending.
  func takeError() -> (any Error)? {
    if error != nil { retrieved = true }
    return error
  }

  /// Logs a failure nobody retrieved (not a cancellation), as coming from
  /// `owner`, and marks it retrieved so it is reported once. The task or
  /// fiber whose result this is calls it as it goes away, to name itself;
  /// a plain future from its `deinit`.
  func reportUnretrieved(owner: @autoclosure () -> String) {
    guard let error, !retrieved, !Self.isCancellation(error) else { return }
    retrieved = true
    loop.loopLogger.warning("\(owner()) failed and its error was never retrieved: \(error)")
  }

  /// `true` once completed with an error or a cancellation.
  var hasFailed: Bool { state == .failed }

  /// The C future a fiber parks on; completed together with this one.
  func cFutureForFiber() -> UnsafeMutablePointer<cloop_future> {
    if let cFuture { return cFuture }
    let f = mallocPointer(to: cloop_future.self)
    // cloop_future_init sets every field.
    cloop_future_init(f, loop.cLoop)
    if state != .pending { _ = cloop_future_set_result(f, 0) }
    cFuture = f
    return f
  }

  /// Adds a waiting task, or finishes it at once if the future completed
  /// while it was on its way to park.
  func addWaiter(_ wait: FutureWait) {
    if state != .pending {
      wait.finish(.success(()))
    } else if firstWaiter == nil {
      firstWaiter = wait
    } else {
      moreWaiters.append(wait)
    }
  }

  func removeWaiter(_ wait: FutureWait) {
    if firstWaiter === wait {
      firstWaiter = moreWaiters.isEmpty ? nil : moreWaiters.removeFirst()
    } else if let i = moreWaiters.firstIndex(where: { $0 === wait }) {
      moreWaiters.remove(at: i)
    }
  }

  /// Just completed: wakes the C future's fibers, runs the observers,
  /// then wakes the waiting tasks (each reads the outcome when it runs).
  private func completed(ok: Bool) {
    if let cFuture { _ = cloop_future_set_result(cFuture, 0) }
    if let first = firstObserver.take() {
      first(ok)
      if !moreObservers.isEmpty {
        let more = moreObservers
        moreObservers = []
        for observer in more { observer(ok) }
      }
    }
    if let first = firstWaiter {
      firstWaiter = nil
      first.finish(.success(()))
      if !moreWaiters.isEmpty {
        let more = moreWaiters
        moreWaiters = []
        for wait in more { wait.finish(.success(())) }
      }
    }
  }

  static func isCancellation(_ error: any Error) -> Bool {
    (error as? TinyAsyncError) == .cancelled || error is CancellationError
  }
}

@available(*, unavailable, message: "a Future belongs to its loop's thread")
extension Future: Sendable {}
