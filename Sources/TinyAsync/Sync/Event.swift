internal import CLoop

/// A flag that tasks and fibers can wait for (asyncio's `Event`): ``wait()-3fxq2``
/// returns once the event is set; ``set()`` wakes every waiter, in the order
/// they began to wait; ``clear()`` makes later waits wait again.
///
/// An event belongs to its loop's thread (it is not `Sendable`). Async
/// tasks `await` ``wait()-3fxq2``; fibers call the synchronous ``wait()-9heq2`` of the
/// same name; both wait in one FIFO (see `SyncWait.swift`). A waiting task
/// that is cancelled, or whose ``withTimeout(_:_:)`` expires, stops
/// waiting and throws; the event is left as it was.
///
/// ```swift
/// try EventLoop.run {
///     let ready = Event()
///     let waiter = EventLoop.current!.spawn {
///         try await ready.wait()
///         return "go"
///     }
///     try await sleep(for: .milliseconds(10))
///     ready.set()
///     print(try await waiter.value)  // go
/// }
/// ```
public final class Event {
  /// The loop it belongs to.
  public let loop: EventLoop
  /// The C event (waiters link into it: it never moves).
  private let record = Pinned(cloop_event())
  var cEvent: UnsafeMutablePointer<cloop_event> { record.pointer }

  /// A clear event of `loop` (default: the loop running on this thread).
  public init(on loop: EventLoop? = nil) {
    self.loop = loop ?? EventLoop.running(for: "Event()")
    self.loop.checkThread("Event()")
    cloop_event_init(cEvent)
  }

  deinit {
    // Unreachable while something waits: a waiter holds the event.
    ensure(cloop_waiting(&cEvent.pointee.waiters) == 0, "an Event went away while tasks wait on it")
  }

  /// `true` once ``set()`` until ``clear()``.
  public var isSet: Bool {
    loop.checkThread("Event.isSet")
    return cloop_event_is_set(cEvent) != 0
  }

  /// Sets the event and wakes every task and fiber waiting for it, in the
  /// order they began to wait. Does nothing if it is set. Loop thread only;
  /// from another thread, go through ``EventLoop/threadSafeHandle``.
  public func set() {
    loop.checkThread("Event.set()")
    cloop_event_set(cEvent)
  }

  /// Clears the event: later ``wait()-9heq2`` calls wait until the next ``set()``.
  public func clear() {
    loop.checkThread("Event.clear()")
    cloop_event_clear(cEvent)
  }

  /// Waits until the event is set; returns at once if it is.
  ///
  /// - Throws: ``TinyAsyncError/cancelled`` if the task is cancelled while
  ///   it waits, ``TinyAsyncError/timedOut`` when an enclosing
  ///   ``withTimeout(_:_:)`` expires.
  public func wait() async throws(TinyAsyncError) {
    if cloop_event_is_set(cEvent) != 0 { return }
    loop.checkThread("Event.wait()")
    _ = try await SyncWait(loop: loop, .eventWait(cEvent)).wait().get()
  }

  /// The fiber form of ``wait()``: parks the calling fiber until the event
  /// is set. Throws ``TinyAsyncError/cancelled`` if the fiber is (or was)
  /// cancelled, ``TinyAsyncError/timedOut`` in an expired
  /// ``withTimeout(_:_:)``. Outside a fiber it stops the program.
  @available(*, noasync, message: "in async code, use try await event.wait()")
  public func wait() throws(TinyAsyncError) {
    loop.checkThread("Event.wait()")
    let e = cEvent
    try fiberCall("Event.wait()") { cloop_event_wait(e) }
  }
}

@available(*, unavailable, message: "an Event belongs to its loop's thread")
extension Event: Sendable {}
