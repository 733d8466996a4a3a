internal import CLoop

/// Mutual exclusion between the tasks and fibers of one loop (asyncio's
/// `Lock`), not reentrant.
///
/// Fair: ``release()`` hands the lock straight to the first waiter, so one
/// that comes later cannot take it first, and waiters get it in the order
/// they began to wait — async tasks and fibers in one FIFO (see
/// `SyncWait.swift`). A waiter that is cancelled, or whose
/// ``withTimeout(_:_:)`` expires, leaves the queue and throws; if the lock
/// was handed to it in the same moment, it is passed on, never lost.
///
/// Who releases: a lock acquired in async code is released by async code
/// (the lock does not tell async tasks apart); one acquired in a fiber by
/// that fiber. Anything else, and releasing a lock that is not held, stops
/// the program with a message. Prefer ``withLock(isolation:_:)``, which
/// releases on every way out. A lock belongs to its loop's thread (it is
/// not `Sendable`).
///
/// ```swift
/// try EventLoop.run {
///     let lock = Lock()
///     var log: [Int] = []
///     let loop = EventLoop.current!
///     let writers = (0..<3).map { i in
///         loop.spawn {
///             try await lock.withLock {
///                 log.append(i)
///                 try await sleep(for: .milliseconds(1))  // others wait
///                 log.append(i)
///             }
///         }
///     }
///     for writer in writers { try await writer.value }
///     print(log)  // [0, 0, 1, 1, 2, 2]
/// }
/// ```
public final class Lock {
  /// The loop it belongs to.
  public let loop: EventLoop
  /// The C lock (waiters link into it: it never moves).
  private let record = Pinned(cloop_lock())
  var cLock: UnsafeMutablePointer<cloop_lock> { record.pointer }

  /// A free lock of `loop` (default: the loop running on this thread).
  public init(on loop: EventLoop? = nil) {
    self.loop = loop ?? EventLoop.running(for: "Lock()")
    self.loop.checkThread("Lock()")
    cloop_lock_init(cLock)
  }

  deinit {
    ensure(cloop_waiting(&cLock.pointee.waiters) == 0, "a Lock went away while tasks wait on it")
  }

  /// `true` while someone holds the lock.
  public var isLocked: Bool {
    loop.checkThread("Lock.isLocked")
    return cloop_lock_locked(cLock) != 0
  }

  /// Takes the lock, waiting while another task or fiber holds it. Returns
  /// at once if it is free (nobody can be waiting then).
  ///
  /// - Throws: ``TinyAsyncError/cancelled`` if the task is cancelled while
  ///   it waits, ``TinyAsyncError/timedOut`` when an enclosing
  ///   ``withTimeout(_:_:)`` expires; then it does not hold the lock.
  public func acquire() async throws(TinyAsyncError) {
    if let wait = acquireOrWait() { _ = try await wait.wait().get() }
  }

  /// Takes the lock if it is free (nil), else the wait for it. (Shared by
  /// `acquire` and `withLock`, which cannot call the nonisolated `acquire`
  /// from its caller's isolation without sending the lock.)
  private func acquireOrWait() -> SyncWait? {
    loop.checkThread("Lock.acquire()")
    if cloop_lock_try_acquire(cLock) == 0 { return nil }
    return SyncWait(loop: loop, .lockAcquire(cLock))
  }

  /// The fiber form of ``acquire()``: parks the calling fiber while the
  /// lock is held. Throws ``TinyAsyncError/cancelled`` if the fiber is (or
  /// was) cancelled, ``TinyAsyncError/timedOut`` in an expired
  /// ``withTimeout(_:_:)``. Acquiring it again in the fiber that holds it,
  /// or calling this outside a fiber, stops the program.
  @available(*, noasync, message: "in async code, use try await lock.acquire()")
  public func acquire() throws(TinyAsyncError) {
    loop.checkThread("Lock.acquire()")
    let l = cLock
    try fiberCall("Lock.acquire()") { cloop_lock_acquire(l) }
  }

  /// Takes the lock if it is free; returns `false` if it is held.
  public func tryAcquire() -> Bool {
    loop.checkThread("Lock.tryAcquire()")
    return cloop_lock_try_acquire(cLock) == 0
  }

  /// Lets go of the lock: the first waiter, if any, holds it now. In async
  /// code for a lock acquired in async code, in a fiber for one that fiber
  /// acquired; otherwise, or if the lock is not held, it stops the program.
  public func release() {
    loop.checkThread("Lock.release()")
    ensure(cloop_lock_locked(cLock) != 0, "Lock.release(): the lock is not held")
    let holder = cLock.pointee.owner
    let me = cloop_current_task()
    if holder != me {
      if me == nil {
        misuse("Lock.release() in async code, but a fiber holds the lock: the fiber that acquired it releases it")
      } else if holder == nil {
        misuse("Lock.release() in a fiber, but async code holds the lock: a lock acquired with await is released in async code")
      } else {
        misuse("Lock.release() in a fiber that does not hold the lock")
      }
    }
    cloop_lock_release(cLock)
  }

  /// Runs `body` holding the lock: acquires it (waiting as ``acquire()-29vi3``
  /// does), and releases it when `body` returns or throws.
  public func withLock<Value>(
    isolation: isolated (any Actor)? = #isolation,
    _ body: () async throws -> Value
  ) async throws -> Value {
    if let wait = acquireOrWait() { _ = try await wait.wait().get() }
    defer { release() }
    return try await body()
  }

  // Disfavoured, as the fiber withTimeout is: in async code a closure
  // without `await` would fit this overload better than the async one.
  /// The fiber form of ``withLock(isolation:_:)``: runs `body` holding the
  /// lock, acquired as the fiber ``acquire()-7xn2o`` does, released when `body`
  /// returns or throws. Outside a fiber it stops the program.
  @_disfavoredOverload
  @available(*, noasync, message: "in async code, use try await lock.withLock { ... }")
  public func withLock<Value>(_ body: () throws -> Value) throws -> Value {
    try acquire()
    defer { release() }
    return try body()
  }
}

@available(*, unavailable, message: "a Lock belongs to its loop's thread")
extension Lock: Sendable {}
