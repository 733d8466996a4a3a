import Synchronization

extension EventLoopGroup {
  /// Runs `body` as a task spawned on `loop` and returns its result to the
  /// caller, which resumes on its own executor: a task of loop A that
  /// awaits work submitted to loop B goes on on A's thread. Any thread,
  /// any async context; `loop` may be the caller's own (the call still
  /// goes through its thread-safe queue).
  ///
  /// The hop is the target loop's ``ThreadSafeHandle`` (a mutex and, when
  /// its queue was empty, one wake-up), and the answer comes back as the
  /// caller's continuation, resumed on `loop`'s thread, which enqueues the
  /// caller's next step on its executor from there (a thread-safe hop too).
  ///
  /// Cancelling the caller cancels the submitted task, and waits for it to
  /// end: nothing submitted is left running behind a caller that gave up.
  /// Called on a loop, the wait is one of the loop's, so a
  /// ``withTimeout(_:_:)`` around it applies too (off a loop, only Swift's
  /// task cancellation does).
  ///
  /// - Throws: What `body` threw; ``TinyAsyncError/cancelled`` when the
  ///   task was cancelled (by the caller, or by the group's shutdown at
  ///   its deadline); ``TinyAsyncError/closed`` when `loop` has ended.
  ///
  /// ```swift
  /// let group = try EventLoopGroup(loops: 2)
  /// let answer = try await group.submit(on: group.loops[1]) {
  ///     try await sleep(for: .milliseconds(10))  // on loop 1's thread
  ///     return 6 * 7
  /// }
  /// ```
  @discardableResult
  public nonisolated(nonsending) func submit<Value: Sendable>(
    on loop: EventLoop, _ body: @escaping @Sendable () async throws -> Value
  ) async throws -> Value {
    ensure(index(of: loop) != nil, "EventLoopGroup.submit(on:_:) was given a loop that is not one of this group's loops; pass one of group.loops or group.next()")
    let handle = loop.internalThreadSafeHandle
    if let home = EventLoop.current {
      // On a loop: the answer lands in a future of the caller's loop, so
      // the await is one of the loop's waits (withTimeout and the task's
      // cancellation interrupt it).
      let answer = Future<Value>(on: home)
      let call = SubmittedCall<Value>(answer.threadSafeCompleter)
      let ticket = SubmittedCall<Value>.Ticket(call)
      handle.call { loop in ticket.start(on: loop, body) }
      do {
        return try await answer.value
      } catch {
        if answer.isComplete { throw error }  // the submitted task's own error
        // Interrupted: cancel the submitted task and wait for its end.
        handle.call { call.cancelRemote() }
        _ = try? await withShield { try await answer.value }
        throw error
      }
    }
    let call = SubmittedCall<Value>(nil)
    return try await withTaskCancellationHandler {
      try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Value, any Error>) in
        call.continuation = continuation  // before it is sent: the queue's mutex orders it
        let ticket = SubmittedCall<Value>.Ticket(call)
        // A closure the loop drops unrun (it has ended) releases the
        // ticket, whose deinit answers .closed: the caller never hangs.
        handle.call { loop in ticket.start(on: loop, body) }
      }
    } onCancel: {
      handle.call { call.cancelRemote() }
    }
  }

  /// ``submit(on:_:)`` on the ``next()`` loop.
  @discardableResult
  public nonisolated(nonsending) func submit<Value: Sendable>(
    _ body: @escaping @Sendable () async throws -> Value
  ) async throws -> Value {
    try await submit(on: next(), body)
  }
}

/// One ``EventLoopGroup/submit(on:_:)``: where the answer goes (a future
/// of the caller's loop, or the caller's continuation) and the remote task.
///
/// `@unchecked Sendable`: `continuation` is written once by the caller
/// before the call is queued (the queue's mutex orders it) and resumed
/// once, by whoever wins `resumed`; `task` and `cancelRequested` are
/// touched on the target loop's thread only.
final class SubmittedCall<Value: Sendable>: @unchecked Sendable {
  private let completer: FutureCompleter<Value>?
  var continuation: CheckedContinuation<Value, any Error>?
  private let resumed = Atomic<Bool>(false)
  private var task: TaskHandle<Void>?
  private var cancelRequested = false

  init(_ completer: FutureCompleter<Value>?) { self.completer = completer }

  func finish(_ result: Result<Value, any Error>) {
    guard !resumed.exchange(true, ordering: .acquiringAndReleasing) else { return }
    if let completer {
      switch result {
      case .success(let value): completer.succeed(value)
      case .failure(let error): completer.fail(error)
      }
    } else {
      continuation!.resume(with: result)
    }
  }

  /// Target loop's thread: the caller was cancelled.
  func cancelRemote() {
    cancelRequested = true
    task?.cancel()
  }

  /// The closure queued on the target loop holds the ticket: run, it
  /// starts the task; dropped unrun (the loop ended), it answers `.closed`.
  final class Ticket: @unchecked Sendable {  // target loop's thread, or dropped unsent
    private let call: SubmittedCall<Value>
    private var started = false

    init(_ call: SubmittedCall<Value>) { self.call = call }

    deinit {
      if !started { call.finish(.failure(TinyAsyncError.closed)) }
    }

    func start(on loop: EventLoop, _ body: @escaping @Sendable () async throws -> Value) {
      started = true
      let call = self.call
      if call.cancelRequested {
        call.finish(.failure(TinyAsyncError.cancelled))
        return
      }
      call.task = loop.spawn(name: "submitted") {
        let result: Result<Value, any Error>
        do {
          result = .success(try await body())
        } catch {
          result = .failure(TinyAsyncError.unified(error))
        }
        // Dropped here, on its loop's thread: once the caller has its
        // answer it may release `call` on its own.
        call.task = nil
        call.finish(result)
      }
    }
  }
}
