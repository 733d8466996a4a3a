internal import CLoop

/// The Swift jobs waiting to run on a loop: a ring buffer of `UnownedJob`s
/// (a pointer each) and one C handle on the loop's ready ring that runs
/// them.
///
/// Why not link each job into the ready ring itself: a job's two
/// executor-private words, where an intrusive link would go, are SPI in
/// Swift 6.3 (`withUnsafeExecutorPrivateData`). A ring buffer of pointers
/// allocates nothing once it has grown, and one handle per batch costs the
/// loop one callback however many jobs run.
///
/// Fairness is the loop's: ``drain()`` runs the jobs that were queued when
/// it started; a job they enqueue (a task resumed, a child spawned) waits
/// for the next iteration, behind timers and I/O, as asyncio's call_soon
/// does. Loop thread only.
final class JobQueue {
  @exclusivity(unchecked) private var jobs: UnsafeMutablePointer<UnownedJob>
  @exclusivity(unchecked) private var capacity = 64  // a power of two
  @exclusivity(unchecked) private var head = 0
  @exclusivity(unchecked) private var count = 0
  /// Tasks parked in `sleep(for: .zero)`, resumed at the next drain.
  @exclusivity(unchecked) private var yielders: [UnsafeContinuation<Void, Never>] = []
  /// The one C handle on the loop's ready ring that stands for the jobs.
  private let record = Pinned(cloop_handle())
  var handle: UnsafeMutablePointer<cloop_handle> { record.pointer }
  private let cLoop: OpaquePointer
  /// Set right after the owning `EventLoop` is initialized.
  unowned(unsafe) var owner: EventLoop!

  init(loop: OpaquePointer) {
    cLoop = loop
    jobs = .allocate(capacity: capacity)
    cloop_handle_init(handle, jobQueueDrain, Unmanaged.passUnretained(self).toOpaque())
  }

  deinit {
    ensure(count == 0, "EventLoop freed with \(count) Swift jobs not yet run")
    jobs.deallocate()
  }

  var isEmpty: Bool { count == 0 && yielders.isEmpty }

  @inline(__always)
  func push(_ job: UnownedJob) {
    if count == capacity { grow() }
    (jobs + ((head + count) & (capacity - 1))).initialize(to: job)
    count += 1
    if cloop_handle_queued(handle) == 0 { cloop_call_soon(cLoop, handle) }
  }

  /// Parks a task until the next iteration (`sleep(for: .zero)`): its
  /// continuation is resumed at the start of the next drain, so its job
  /// joins the batch there behind the jobs queued before it -- where the
  /// job of a zero timer firing would be, without the timer.
  func yield(_ continuation: UnsafeContinuation<Void, Never>) {
    yielders.append(continuation)
    if cloop_handle_queued(handle) == 0 { cloop_call_soon(cLoop, handle) }
  }

  private func grow() {
    let bigger = UnsafeMutablePointer<UnownedJob>.allocate(capacity: capacity * 2)
    for i in 0..<count {
      (bigger + i).initialize(to: jobs[(head + i) & (capacity - 1)])
    }
    jobs.deallocate()
    jobs = bigger
    capacity *= 2
    head = 0
  }

  /// Runs the batch queued when it starts (the C handle's callback).
  fileprivate func drain() {
    if !yielders.isEmpty {
      // Each resume enqueues the task's job (`push`), not a yielder.
      for continuation in yielders { continuation.resume() }
      yielders.removeAll(keepingCapacity: true)
    }
    let taskExecutor = owner.asUnownedTaskExecutor()
    var n = count
    while n > 0 {
      let job = jobs[head]
      head = (head + 1) & (capacity - 1)
      count -= 1
      n -= 1
      // As the task executor: the task's nonisolated code then runs on
      // without a hop at each await. (Run isolated to the serial executor,
      // every call into a nonisolated async function hops through the
      // queue once more: 392 vs 231 ns per await, DESIGN.md.) An actor
      // whose executor is this loop still runs here: the runtime checks
      // its isolation against `checkIsolated`.
      job.runSynchronously(on: taskExecutor)
    }
    if count > 0 && cloop_handle_queued(handle) == 0 { cloop_call_soon(cLoop, handle) }
  }
}

private let jobQueueDrain: cloop_fn = { arg in
  Unmanaged<JobQueue>.fromOpaque(arg!).takeUnretainedValue().drain()
}
