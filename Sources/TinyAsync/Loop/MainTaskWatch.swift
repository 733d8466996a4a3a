internal import CLoop

/// What ``EventLoop/runUntilComplete(_:)`` needs to tell a main task that
/// waits for something that can still happen from one that waits for
/// nothing that can: the C core's `cloop_main` reports the second as
/// `-EDEADLK`, and so does the Swift entry, as ``TinyAsyncError/deadlocked``.
///
/// The main task holds a reference on the C loop (`cloop_ref`) while it
/// runs or waits outside the loop (a continuation resumed on another
/// thread, another actor), and drops it while it is parked in one of the
/// loop's own waits (a ``LoopWait``: a future's value, an event, a lock,
/// a gather...). If the loop then runs out of work (no ready job, timer,
/// watcher, operation, work-pool job or reference left), only loop-side
/// code could have woken it, and none is left to run: a deadlock --
/// unless something the loop cannot see may still come:
/// - a task other than the main one: every Swift task that runs on the
///   loop enqueues jobs here, so ``otherTaskSeen`` is set by the first job
///   that is not the main task's. Spawned tasks hold a loop reference of
///   their own while they run, but a task one of them (or the main task)
///   starts -- `async let`, a task group's child -- is seen only by its
///   jobs, and may be waiting elsewhere;
/// - a thread holding a ``ThreadSafeHandle`` (or a ``FutureCompleter``,
///   which is one): taking one marks the loop for good.
/// Either turns the check off for the rest of the loop's life: no false
/// report, at the price of missing some real deadlocks.
///
/// Cost: on the loop's thread, one pointer compare per job enqueued
/// (``noteJob(_:)``), one per park of a wait and one per finish.
struct MainTaskWatch {
  /// The main task of the running `runUntilComplete` (the address the
  /// Swift runtime gives its jobs and continuations), or nil.
  var task: UnsafeRawPointer?
  /// The next job enqueued is the main task's first (it is being made).
  var expectingMain = false
  /// A job of another task has been enqueued on this loop (sticky).
  var otherTaskSeen = false
  /// The main task holds its reference on the C loop.
  var holdsRef = false
  /// The loop's wait the main task is parked in (not held: the wait
  /// clears it when it finishes).
  unowned(unsafe) var wait: (any Interruptible)?
}

extension EventLoop {
  /// Notes a job enqueued on the loop's thread or from another: see
  /// ``MainTaskWatch/otherTaskSeen``.
  @inline(__always)
  func noteJob(_ job: UnownedJob) {
    let address = unsafeBitCast(job, to: UnsafeRawPointer.self)
    if address != mainWatch.task { noteOtherJob(address) }
  }

  @inline(never)
  private func noteOtherJob(_ address: UnsafeRawPointer) {
    if mainWatch.expectingMain {
      mainWatch.expectingMain = false
      mainWatch.task = address
    } else {
      mainWatch.otherTaskSeen = true
    }
  }

  /// True while the check can still tell a deadlock (see the type).
  var deadlockDetectable: Bool {
    !mainWatch.otherTaskSeen && !threadSafeQueue.wasHandedOut
  }

  /// Called by a wait as it parks the task whose continuation is `task`.
  @inline(__always)
  func waitParks(_ wait: any Interruptible, task: UnsafeRawPointer) {
    if task == mainWatch.task { mainParks(in: wait) }
  }

  private func mainParks(in wait: any Interruptible) {
    mainWatch.wait = wait
    if deadlockDetectable { dropMainRef() }
  }

  /// Called by a wait as it finishes (its task resumes).
  @inline(__always)
  func waitFinishes(_ wait: any Interruptible) {
    if mainWatch.wait === wait {
      mainWatch.wait = nil
      takeMainRef()
    }
  }

  func takeMainRef() {
    if !mainWatch.holdsRef {
      mainWatch.holdsRef = true
      cloop_ref(cLoop)
    }
  }

  func dropMainRef() {
    if mainWatch.holdsRef {
      mainWatch.holdsRef = false
      cloop_unref(cLoop)
    }
  }

  /// The loop ran out of work while the main task was not done: true if
  /// that is a deadlock (the main task is parked in a wait of the loop's
  /// and nothing unseen can come), after interrupting the main task's wait
  /// with ``TinyAsyncError/cancelled`` so that it unwinds. Otherwise the
  /// main task takes its reference back and the loop waits as before.
  func mainTaskDeadlocked() -> Bool {
    guard let wait = mainWatch.wait, deadlockDetectable else {
      takeMainRef()
      return false
    }
    wait.interrupt(.cancelled)
    return true
  }
}
