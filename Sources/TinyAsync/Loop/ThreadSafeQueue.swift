internal import CLoop
internal import Glibc
import Synchronization

/// The state behind ``ThreadSafeHandle``: closures from other threads wait
/// here under a mutex, and one C handle (`drainHandle`) is queued with
/// `cloop_call_threadsafe` per batch, not per call, so a burst of calls
/// costs one wake-up of the loop. The loop thread runs the whole batch in
/// one callback, in arrival order (FIFO per calling thread).
///
/// Lifetime: handles may outlive the loop. `EventLoop.deinit` calls
/// `close()`, after which `enqueue` refuses work, and waits until an
/// in-flight `drainHandle` has come through before freeing the C loop.
///
/// The lock is a `pthread_mutex_t`, not `Synchronization.Mutex`: on Linux
/// ThreadSanitizer cannot see `Mutex`'s futex-based lock and reports false
/// races (checked with Swift 6.3.1), while it intercepts pthread mutexes,
/// so `swift test --sanitize=thread` stays meaningful. Same cost here.
///
/// `@unchecked Sendable`: `state` is guarded by `mutex`; `loop` and
/// `drainHandle` are immutable and only passed to C (`cloop_call_threadsafe`
/// is the C core's one thread-safe entry); `owner` is touched only on the
/// loop thread.
final class ThreadSafeQueue: @unchecked Sendable {
  enum Call {
    case plain(@Sendable () -> Void)
    case withLoop(@Sendable (EventLoop) -> Void)
    /// A Swift job enqueued on the loop's executor from another thread.
    case job(UnownedJob)
  }

  struct State {
    var pending: [Call] = []
    /// `drainHandle` was handed to `cloop_call_threadsafe` and its callback
    /// has not started yet; C forbids queueing it again until then.
    var scheduled = false
    var closed = false
  }

  private let mutexRecord = Pinned(pthread_mutex_t())
  private var mutex: UnsafeMutablePointer<pthread_mutex_t> { mutexRecord.pointer }
  private var state = State()  // guarded by `mutex`
  private let loop: OpaquePointer
  private let drainRecord = Pinned(cloop_handle())
  private var drainHandle: UnsafeMutablePointer<cloop_handle> { drainRecord.pointer }
  /// Set right after the owning `EventLoop` is initialized.
  unowned(unsafe) var owner: EventLoop?
  /// A public ``ThreadSafeHandle`` was taken (see `MainTaskWatch`).
  private let handedOut = Atomic<Bool>(false)

  func noteHandedOut() { handedOut.store(true, ordering: .relaxed) }
  var wasHandedOut: Bool { handedOut.load(ordering: .relaxed) }

  init(loop: OpaquePointer) {
    self.loop = loop
    pthread_mutex_init(mutex, nil)
    cloop_handle_init(drainHandle, threadSafeQueueDrain, Unmanaged.passUnretained(self).toOpaque())
  }

  deinit {
    pthread_mutex_destroy(mutex)
  }

  private func withLock<Result>(_ body: (inout State) -> Result) -> Result {
    pthread_mutex_lock(mutex)
    defer { pthread_mutex_unlock(mutex) }
    return body(&state)
  }

  /// Any thread. Returns false (and drops `call`) once the loop is gone.
  func enqueue(_ call: Call) -> Bool {
    withLock { state in
      if state.closed { return false }
      state.pending.append(call)
      if !state.scheduled {
        state.scheduled = true
        // Under the lock, so `close()` cannot slip in between.
        cloop_call_threadsafe(loop, drainHandle)
      }
      return true
    }
  }

  /// Loop thread, from `drainHandle`'s callback.
  fileprivate func drain() {
    let batch = withLock { state -> [Call] in
      state.scheduled = false
      var batch: [Call] = []
      swap(&batch, &state.pending)
      return batch
    }
    guard let owner else { return }
    for call in batch {
      switch call {
      case .plain(let body): body()
      case .withLoop(let body): body(owner)
      case .job(let job):
        owner.jobsFromOtherThreads &+= 1
        owner.noteJob(job)
        owner.readyQueue.push(job)
      }
    }
  }

  /// Loop thread, from `EventLoop.deinit`: refuses further calls and drops
  /// the pending ones unrun. Returns true if `drainHandle` is still in
  /// flight, so the loop must run until `isScheduled` turns false.
  func close() -> Bool {
    let (dropped, scheduled) = withLock { state -> ([Call], Bool) in
      state.closed = true
      var dropped: [Call] = []
      swap(&dropped, &state.pending)
      return (dropped, state.scheduled)
    }
    for case .job in dropped {
      // A job is a Swift task's next step: dropping it would leak the task
      // and hang whatever awaits it. (EventLoop.deinit runs only when no
      // task holds the loop, so nothing should be here.)
      misuse("EventLoop freed while another thread enqueued a Swift job on it")
    }
    _ = consume dropped  // released outside the lock: their deinits may take it
    return scheduled
  }

  var isScheduled: Bool {
    withLock { $0.scheduled }
  }
}

private let threadSafeQueueDrain: cloop_fn = { arg in
  Unmanaged<ThreadSafeQueue>.fromOpaque(arg!).takeUnretainedValue().drain()
}
