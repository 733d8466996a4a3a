internal import CLoop

/// An ``EventLoop``'s time as a Swift `Clock`: its instants are the loop's
/// ``EventLoop/now`` and its sleeps are timers on the loop's heap, so
/// `Task.sleep(for:tolerance:clock:)` and any code generic over `Clock`
/// run on the loop, in deadline order with its own ``EventLoop/callLater(_:_:)``
/// timers, with no Dispatch timer and no other thread.
///
/// A sleep is ``sleep(for:)-8kvpr``'s: the task's cancellation ends it and so
/// does an enclosing ``withTimeout(_:_:)``. A deadline that has passed
/// yields to the loop once (asyncio's `sleep(0)`), as `sleep(for: .zero)` does.
///
/// The clock is `Sendable` because `Clock` requires it, but it is the loop's:
/// ``now`` stops the program with a message off the loop's thread, and
/// ``sleep(until:tolerance:)`` anywhere but in code running on its loop (a task
/// started by ``EventLoop/spawn(name:isolation:_:)``, ``EventLoop/run(backend:_:)``
/// or `Task(executorPreference: loop)`). It does not hop: a sleep from
/// another thread would wake on that thread's executor anyway, and reading
/// ``now`` there would race with the loop updating it.
///
/// ```swift
/// try EventLoop.run {
///     let clock = EventLoop.current!.clock
///     let start = clock.now
///     try await Task.sleep(for: .milliseconds(20), clock: clock)  // the loop's timer
///     print(start.duration(to: clock.now))                        // about 20 ms
/// }
/// ```
public struct LoopClock: Clock {
  /// The loop whose time this is.
  public let loop: EventLoop

  /// The clock of `loop`; the same as `loop.clock`.
  public init(_ loop: EventLoop) {
    self.loop = loop
  }

  /// A point in a loop's time: its ``EventLoop/now`` at that point, in the
  /// loop's monotonic time (`CLOCK_MONOTONIC`, or the manual clock of a test
  /// loop). Instants of loops on the system clock compare with each other;
  /// a manual clock's instants are its loop's alone.
  ///
  /// ```swift
  /// let deadline = loop.clock.now.advanced(by: .seconds(2))
  /// try await loop.clock.sleep(until: deadline)
  /// ```
  public struct Instant: InstantProtocol {
    /// Time since the monotonic clock's origin (for the system clock, an
    /// unspecified point such as boot); what ``EventLoop/now`` returns.
    public var offset: Duration

    /// The instant `offset` after the clock's origin.
    public init(offset: Duration) {
      self.offset = offset
    }

    /// The instant `duration` later (earlier, if negative).
    public func advanced(by duration: Duration) -> Instant {
      Instant(offset: offset + duration)
    }

    /// The time from this instant to `other` (negative if `other` is earlier).
    public func duration(to other: Instant) -> Duration {
      other.offset - offset
    }

    /// Whether `lhs` comes before `rhs`.
    public static func < (lhs: Instant, rhs: Instant) -> Bool {
      lhs.offset < rhs.offset
    }
  }

  /// The loop's ``EventLoop/now`` as an instant: read once per iteration
  /// (after the poll), so two readings in one callback or task step are
  /// equal, and a deadline computed from it lands where ``EventLoop/callLater(_:_:)``
  /// would put a timer of the same delay.
  public var now: Instant {
    if !loop.isOnLoopThread {
      misuse("LoopClock.now: read off its EventLoop's thread (e.g. in Task {} or Task.detached, or by Task.sleep(for:clock:) there); use the clock on the loop's thread: in a task started by loop.spawn { ... } or Task(executorPreference: loop) { ... }")
    }
    return Instant(offset: .nanoseconds(Int64(clamping: cloop_now(loop.cLoop))))
  }

  /// One nanosecond: the unit of the loop's time and of its timer heap.
  /// A timer fires in the first iteration after its deadline, so a wake-up
  /// comes later by the poll's own granularity (nanoseconds with
  /// `epoll_pwait2` and io_uring, whole milliseconds with plain `epoll_wait`)
  /// and by the callbacks that run before it.
  public var minimumResolution: Duration { .nanoseconds(1) }

  /// Suspends the calling task until `deadline` on the loop's timer heap.
  ///
  /// `tolerance` is ignored: the heap keeps exact deadlines and fires every
  /// due timer in the same iteration, so there is nothing to coalesce.
  ///
  /// - Throws: ``TinyAsyncError/cancelled`` when the task is cancelled while
  ///   it sleeps, ``TinyAsyncError/timedOut`` when an enclosing
  ///   ``withTimeout(_:_:)`` expires (what ``sleep(for:)-ubcc`` throws).
  public nonisolated(nonsending) func sleep(until deadline: Instant, tolerance: Duration? = nil) async throws {
    checkOnLoop("LoopClock.sleep(until:tolerance:)")
    let delay = (deadline.offset - .nanoseconds(Int64(clamping: cloop_now(loop.cLoop)))).saturatingNanoseconds
    if delay <= 0 {
      try await yieldToLoop(loop)
      return
    }
    try await SleepWait(loop: loop, delay: delay).wait().get()
  }

  /// Stops unless the calling code runs on this loop: its thread, while it runs.
  private func checkOnLoop(_ operation: StaticString) {
    if EventLoop.current !== loop {
      misuse("\(operation): called off its EventLoop (from another thread, e.g. in Task {} or Task.detached, or while the loop is not running); use the clock from a task on the loop: loop.spawn { ... } or Task(executorPreference: loop) { ... }")
    }
  }
}

extension EventLoop {
  /// This loop's time as a Swift `Clock` (see ``LoopClock``): pass it to
  /// `Task.sleep(for:tolerance:clock:)` or to any code generic over `Clock`
  /// to sleep on the loop's timer heap.
  ///
  /// ```swift
  /// try await Task.sleep(for: .milliseconds(5), clock: loop.clock)
  /// ```
  public var clock: LoopClock { LoopClock(self) }
}
