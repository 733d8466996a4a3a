/// The deadline of one ``withTimeout(_:_:)`` scope, seen by the waits inside
/// it through a task-local (child tasks inherit it; ``EventLoop/spawn(name:_:)``
/// does not pass it on, as asyncio's `create_task` inside `timeout()`
/// makes a task the timeout does not cover).
///
/// The waits of the async front (``LoopWait``) link themselves into the
/// innermost scope's list while they wait; when a scope's timer fires it
/// marks itself expired and interrupts every wait in its list and in the
/// lists of the scopes nested in it. A wait that starts in an expired scope
/// fails at once. Loop thread only.
///
/// A ``withShield(timeout:isolation:_:)`` scope is one with no `outer`: the
/// deadlines around it neither reach the waits inside it nor are seen by
/// them, and it (with every scope nested in it) tells the waits to ignore
/// the task's cancellation.
final class TimeoutScope: @unchecked Sendable {
  @TaskLocal static var current: TimeoutScope?

  let outer: TimeoutScope?
  /// Inside a shield: the waits ignore the task's cancellation.
  let isShielded: Bool
  @exclusivity(unchecked) private var expired = false
  @exclusivity(unchecked) private var waiters: (any Interruptible)?
  /// Scopes entered inside this one and not left yet (usually none).
  @exclusivity(unchecked) private var inner: [TimeoutScope] = []

  init(outer: TimeoutScope?) {
    self.outer = outer
    self.isShielded = outer?.isShielded ?? false
    outer?.inner.append(self)
  }

  /// A shield scope: cut off from the scopes around it.
  private init(shield: Void) {
    self.outer = nil
    self.isShielded = true
  }

  static func shield() -> TimeoutScope { TimeoutScope(shield: ()) }

  /// What a wait starting now in the current task would fail with, if
  /// anything: its cancellation (unless shielded), then an expired scope.
  /// For the paths that finish without parking (a yield, a write that
  /// fits), which must honour what a wait would have.
  static func pendingInterruption() -> TinyAsyncError? {
    let scope = current
    if Task.isCancelled && !(scope?.isShielded ?? false) { return .cancelled }
    if let scope, scope.isExpired { return .timedOut }
    return nil
  }

  var isExpired: Bool {
    var scope: TimeoutScope? = self
    while let s = scope {
      if s.expired { return true }
      scope = s.outer
    }
    return false
  }

  func link(_ waiter: any Interruptible) {
    waiter.scopeNext = waiters
    waiters?.scopePrev = waiter
    waiter.scopePrev = nil
    waiters = waiter
  }

  func unlink(_ waiter: any Interruptible) {
    if let prev = waiter.scopePrev {
      prev.scopeNext = waiter.scopeNext
    } else {
      waiters = waiter.scopeNext
    }
    waiter.scopeNext?.scopePrev = waiter.scopePrev
    waiter.scopeNext = nil
    waiter.scopePrev = nil
  }

  /// The timer's callback.
  func expire() {
    expired = true
    interruptAll()
  }

  private func interruptAll() {
    while let waiter = waiters {
      waiter.interrupt(.timedOut)  // unlinks it
      if waiters === waiter { unlink(waiter) }  // defensive: never loop
    }
    for scope in inner { scope.interruptAll() }
  }

  /// Leaving the scope.
  func close() {
    if let outer, let i = outer.inner.lastIndex(where: { $0 === self }) {
      outer.inner.remove(at: i)
    }
  }
}

/// Something a ``withTimeout(_:_:)`` scope can interrupt while it waits: a
/// ``LoopWait``, whatever its `Success` and `Failure`. The scope's list is
/// intrusive, linked through these two properties of each waiter, so
/// waiting allocates no node. Loop thread only.
protocol Interruptible: AnyObject {
  /// The next waiter in the scope's list (held).
  var scopeNext: (any Interruptible)? { get set }
  /// The one before it (not held: the list holds it through `scopeNext`).
  var scopePrev: (any Interruptible)? { get set }
  /// Ends the wait with `error` and unlinks it from its scope.
  func interrupt(_ error: TinyAsyncError)
}

/// Runs `body`, interrupting it once `timeout` has passed (asyncio's
/// `timeout()`): the loop operation it waits in then — or starts later —
/// throws ``TinyAsyncError/timedOut``, which unwinds `body` unless it
/// catches it. Scopes nest; each has its own deadline. If `body` returns
/// before, its value is returned; a `body` that catches the timeout and
/// returns normally is not overruled.
///
/// Covered are the waits of this module: ``sleep(for:)-ubcc``, a ``Future``'s
/// value, ``TaskHandle/value``, ``gather(_:)-64glp``, socket operations, the
/// synchronisation primitives — in this task and in its child tasks
/// (`async let`, task groups). Not covered: waits the loop cannot see, such
/// as Swift's `Task.sleep` or an `AsyncStream` fed from elsewhere; wrap
/// those in a child task you cancel.
///
/// ```swift
/// do {
///     try await withTimeout(.milliseconds(100)) {
///         try await sleep(for: .seconds(10))
///     }
/// } catch TinyAsyncError.timedOut {
///     print("gave up after 100 ms")
/// }
/// ```
public func withTimeout<Value>(
  _ timeout: Duration,
  isolation: isolated (any Actor)? = #isolation,
  _ body: () async throws -> Value
) async throws -> Value {
  let loop = EventLoop.running(for: "withTimeout")
  let scope = TimeoutScope(outer: TimeoutScope.current)
  let timer = loop.callLater(timeout) { scope.expire() }
  defer {
    timer.cancel()
    scope.close()
  }
  do {
    return try await TimeoutScope.$current.withValue(scope) {
      try await body()
    }
  } catch {
    throw TinyAsyncError.unified(error)  // one cancellation error
  }
}

/// Runs `body` shielded (asyncio's `shield`, Trio's shielded cancel scope):
/// inside it the waits of this module ignore the task's cancellation and
/// the deadlines of the ``withTimeout(_:_:)`` scopes around it. Neither is
/// lost: the first wait after the shield throws it. With a `timeout`, the
/// shield has a deadline of its own (a shield should not wait forever).
///
/// This is how a cancelled task cleans up. Swift's cancellation is sticky:
/// once a task is cancelled, `Task.isCancelled` stays true and every later
/// wait of this module throws ``TinyAsyncError/cancelled`` at once (asyncio
/// delivers `CancelledError` once). So a `catch` that must still say
/// goodbye on a socket or wait for a child does it in a shield:
///
/// ```swift
/// do {
///     try await serve(connection)
/// } catch TinyAsyncError.cancelled {
///     try await withShield(timeout: .seconds(1)) {
///         try await connection.write(Array("bye\n".utf8))
///         try await sleep(for: .milliseconds(10))
///     }
///     throw TinyAsyncError.cancelled
/// }
/// ```
///
/// Child tasks (`async let`, task groups) inherit the shield;
/// ``EventLoop/spawn(name:isolation:_:)`` does not pass it on.
public func withShield<Value>(
  timeout: Duration? = nil,
  isolation: isolated (any Actor)? = #isolation,
  _ body: () async throws -> Value
) async throws -> Value {
  _ = EventLoop.running(for: "withShield")
  do {
    return try await TimeoutScope.$current.withValue(TimeoutScope.shield()) {
      if let timeout {
        return try await withTimeout(timeout, body)
      }
      return try await body()
    }
  } catch {
    throw TinyAsyncError.unified(error)  // one cancellation error
  }
}
