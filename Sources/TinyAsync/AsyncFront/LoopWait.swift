internal import CLoop

/// One suspension of a Swift task on the loop: every async operation of the
/// async front (sleep, a future's value, a socket operation) is a subclass
/// that starts its C operation in ``start()``, stops it in ``stop()``, and
/// calls ``finish(_:)`` from the loop when it completes.
///
/// It is the seeds' `Future.__await__` in Swift: the task parks by handing
/// its continuation to this object and is put back (its job enqueued on the
/// loop) by whichever comes first:
/// - the operation completing (``finish(_:)``);
/// - the Swift task being cancelled (`withTaskCancellationHandler`; the
///   handler may run on any thread, so from elsewhere it hops to the loop);
/// - the deadline of an enclosing ``withTimeout(_:_:)`` scope.
/// Inside a ``withShield(timeout:isolation:_:)`` it parks without the
/// cancellation handler: the task's cancellation waits for the shield's end.
/// The continuation is resumed exactly once; the loser stops its operation.
///
/// A base class, not a protocol: the wait is one object (one allocation)
/// that the cancellation handler, the timeout scope and the C callback all
/// reach, and that C hands back from a `void *` as its concrete subclass;
/// the parking logic above lives here once. Each subclass adds its C
/// record and overrides ``start()`` and ``stop()``, whose defaults do
/// nothing (a `GatherWait` needs neither).
///
/// `@unchecked Sendable`: the cancellation handler must be `@Sendable`; it
/// touches the object only on the loop's thread (it hops there first).
class LoopWait<Success, Failure: Error>: Interruptible, @unchecked Sendable {
  let loop: EventLoop
  // The links of the innermost `TimeoutScope`'s list while this waits.
  @exclusivity(unchecked) var scopeNext: (any Interruptible)?
  @exclusivity(unchecked) unowned(unsafe) var scopePrev: (any Interruptible)?
  @exclusivity(unchecked) private var continuation: UnsafeContinuation<Outcome, Never>?
  /// An outcome that came before the task parked (and so before
  /// ``start()``): an interruption, since cancellation handlers run at once
  /// in an already-cancelled task, or the finish of a wait that others can
  /// reach before it parks (gather's).
  @exclusivity(unchecked) private var early: Result<Success, Failure>?
  /// Set once the outcome is handed over; later completions are ignored.
  @exclusivity(unchecked) private var isOver = false
  @exclusivity(unchecked) private var scope: TimeoutScope?

  init(loop: EventLoop) {
    self.loop = loop
  }

  /// Starts the operation. It must end by calling ``finish(_:)`` (from a
  /// later callback, or at once).
  func start() {}
  /// Stops the operation without finishing: its completion must not come.
  func stop() {}
  /// The failure for an interruption (cancellation, timeout).
  func failure(for error: TinyAsyncError) -> Failure {
    error as! Failure  // Failure is TinyAsyncError or any Error
  }

  /// Parks the calling task until the operation finishes or it is
  /// interrupted.
  ///
  /// `nonisolated(nonsending)`, as every async function of the front that
  /// leads here: it runs on the caller's executor, the loop. A plain
  /// nonisolated async function begins with a hop to the generic executor
  /// (`swift_task_switch`), which for a task with an executor preference
  /// looks the preference up under the task's status lock: about 250
  /// instructions per call, and an await went through five of them.
  nonisolated(nonsending) final func wait() async -> Result<Success, Failure> {
    let scope = TimeoutScope.current
    if let scope, scope.isExpired { return .failure(failure(for: .timedOut)) }
    if let scope, scope.isShielded {
      // A shield: the task's cancellation is not this wait's to see.
      let outcome: Outcome = await withUnsafeContinuation { continuation in
        park(continuation, scope)
      }
      return outcome.value
    }
    let outcome: Outcome = await withTaskCancellationHandler {
      await withUnsafeContinuation { (continuation: UnsafeContinuation<Outcome, Never>) in
        park(continuation, scope)
      }
    } onCancel: {
      cancelFromAnyThread()
    }
    return outcome.value
  }

  typealias Outcome = LoopThreadOnly<Result<Success, Failure>>

  private func park(_ continuation: UnsafeContinuation<Outcome, Never>, _ scope: TimeoutScope?) {
    if let early {
      isOver = true
      continuation.resume(returning: Outcome(early))
      return
    }
    self.continuation = continuation
    loop.waitParks(self, task: unsafeBitCast(continuation, to: UnsafeRawPointer.self))
    if let scope {
      self.scope = scope
      scope.link(self)
    }
    start()
  }

  /// The cancellation handler runs on the thread that cancelled the task.
  private func cancelFromAnyThread() {
    if loop.isOnLoopThread {
      interrupt(.cancelled)
    } else {
      loop.internalThreadSafeHandle.call { self.interrupt(.cancelled) }
    }
  }

  /// Called by the operation when it completes. Ignored after an
  /// interruption won.
  final func finish(_ result: Result<Success, Failure>) {
    if isOver { return }
    guard let continuation = continuation.take() else {
      // Not parked yet (a wait others can see before it parks, as gather's
      // is): park answers at once.
      if early == nil { early = result }
      return
    }
    isOver = true
    scope?.unlink(self)
    scope = nil
    loop.waitFinishes(self)
    continuation.resume(returning: Outcome(result))
  }

  final func interrupt(_ error: TinyAsyncError) {
    if isOver { return }
    guard continuation != nil else {
      if early == nil { early = .failure(failure(for: error)) }
      return
    }
    stop()
    finish(.failure(failure(for: error)))
  }
}
