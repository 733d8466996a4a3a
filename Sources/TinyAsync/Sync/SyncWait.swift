internal import CLoop

// How Event, Lock, Semaphore and Queue wait: over the C primitives of
// sync.c, with one wait queue per primitive whoever waits.
//
// Each C primitive keeps one FIFO list of waiters. A fiber is a C task: it
// waits in that list through the C task calls (cloop_lock_acquire and the
// like, in `fiberSuspend`). A Swift async task is no C task and cannot park
// there, so it waits through a callback waiter (`cloop_waiter` with the
// `*_cb` calls), a record that joins the *same* list. Fibers and async
// tasks are thus served in one arrival order, the hand-off rules (no
// barging, a cancelled waiter passes nothing on) live once, in C, and a
// fiber and an async task can share a lock or a queue. (The other way, a
// Swift list beside the C one, would need two queues merged by arrival
// order and a second copy of those rules.)
//
// The C side hands the lock, permit, queue slot or item over and calls the
// waiter's callback inside the waking call (a release, a set, a put). The
// callback only finishes the `LoopWait`, which resumes the task's
// continuation (queues its job). From then on the thing is the task's,
// even if the task is cancelled before its job runs: a `LoopWait` ignores
// an interruption after its finish, so the task sees success and, say,
// releases the lock it now holds. An interruption that comes first
// (cancellation, a ``withTimeout(_:_:)`` deadline) stops the wait, and
// `cloop_waiter_cancel` takes the record off the list having received
// nothing: no wake-up and no item is lost either way.

/// One Swift task waiting in a sync primitive's FIFO list. Its success is
/// the value handed over: a queue item (a slot index of ``Queue``), else 0.
final class SyncWait: LoopWait<Int, TinyAsyncError>, @unchecked Sendable {
  /// The C call that starts the wait; each returns 0 (done at once) or 1
  /// (waiting; the callback comes later).
  enum Operation {
    case eventWait(UnsafeMutablePointer<cloop_event>)
    case lockAcquire(UnsafeMutablePointer<cloop_lock>)
    case semaphoreAcquire(UnsafeMutablePointer<cloop_semaphore>)
    case queuePut(UnsafeMutablePointer<cloop_queue>, item: Int)
    case queueGet(UnsafeMutablePointer<cloop_queue>)
  }

  private let operation: Operation
  /// On the heap: it must not move while it is on the primitive's list.
  private let record = Pinned(cloop_waiter())

  init(loop: EventLoop, _ operation: Operation) {
    self.operation = operation
    super.init(loop: loop)
    cloop_waiter_init(record.pointer, syncWaitWoken, Unmanaged.passUnretained(self).toOpaque())
  }

  override func start() {
    // The primitive's list holds the record, not this object: retain it
    // until the callback or stop().
    _ = Unmanaged.passRetained(self)
    var item = 0
    let waiter = record.pointer
    let rc: Int32 =
      switch operation {
      case .eventWait(let e): cloop_event_wait_cb(e, waiter)
      case .lockAcquire(let l): cloop_lock_acquire_cb(l, waiter)
      case .semaphoreAcquire(let s): cloop_semaphore_acquire_cb(s, waiter)
      case .queuePut(let q, let i): cloop_queue_put_cb(q, i, waiter)
      case .queueGet(let q): cloop_queue_get_cb(q, &item, waiter)
      }
    if rc == 0 {  // the fast path, taken again at park time, succeeded
      Unmanaged.passUnretained(self).release()
      finish(.success(item))
    }
  }

  override func stop() {
    if cloop_waiter_cancel(record.pointer) != 0 {
      Unmanaged.passUnretained(self).release()
    }
  }
}

/// The C callback: the turn (and, for a get, the item) is this wait's.
private let syncWaitWoken: cloop_waiter_fn = { waiter, value in
  let wait = Unmanaged<SyncWait>.fromOpaque(waiter!.pointee.arg).takeRetainedValue()
  wait.finish(.success(value))
}
