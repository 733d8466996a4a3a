internal import CLoop

/// The Swift work ready to run on a loop, in the order it was queued: a
/// task's next step (a Swift job), a `callSoon` closure, a task parked in
/// `sleep(for: .zero)`. It is the Swift half of asyncio's ready deque, and
/// it keeps asyncio's order: what is queued before a batch begins runs in
/// that batch, in queue order; what is queued during a batch runs in the
/// next one.
///
/// One ring of entries, and a C handle on the loop's ready ring that
/// stands for them: the loop pays one callback per batch however many
/// entries run, and a ring that has grown allocates nothing. (Why not a C
/// handle a job: a job's two executor-private words, where an intrusive
/// link would go, are SPI in Swift 6.3, `withUnsafeExecutorPrivateData`.)
///
/// The handle runs at its place in the C batch, so an entry queued after
/// its batch has begun (by a C handle or a timer running in that batch,
/// or by an entry the handle is running) must not run with it: it belongs
/// behind everything queued in this batch. The C loop counts its batches
/// (`cloop_batch_count`); a handle queued at count c runs in batch c + 1.
/// When an entry arrives after the front handle's batch has begun, a
/// second handle is queued for it and the entries after it (the back
/// segment). Two are always enough: the back handle's batch begins only
/// after the front handle has run, and then the back becomes the front.
///
/// Loop thread only (the executor's `enqueue` checks; `callSoon` checks).
final class ReadyQueue {
  enum Entry {
    case job(UnownedJob)
    case closure(() -> Void)
    /// A task in `sleep(for: .zero)`: resumed, and its step run, at its
    /// place in the queue (asyncio's sleep(0) queues the task's step).
    case yield(UnsafeContinuation<Void, Never>)
    case cancelled
  }

  @exclusivity(unchecked) private var ring: UnsafeMutablePointer<Entry>
  @exclusivity(unchecked) private var capacity = 64  // a power of two
  @exclusivity(unchecked) private var head = 0
  @exclusivity(unchecked) private(set) var count = 0
  /// The sequence number of the entry at `head`: entry `s` is at
  /// `head + (s - headSeq)` while `headSeq <= s < headSeq + count`. A
  /// `callSoon` handle is its entry's number (no allocation to cancel).
  @exclusivity(unchecked) private var headSeq: UInt64 = 0
  /// The first `frontCount` entries are the front handle's segment.
  @exclusivity(unchecked) private var frontCount = 0
  @exclusivity(unchecked) private var frontQueued = false
  @exclusivity(unchecked) private var frontBatch: UInt64 = 0
  @exclusivity(unchecked) private var backQueued = false
  @exclusivity(unchecked) private var backBatch: UInt64 = 0
  @exclusivity(unchecked) private var front: UnsafeMutablePointer<cloop_handle>
  @exclusivity(unchecked) private var back: UnsafeMutablePointer<cloop_handle>
  /// Set when the loop is freed: `cLoop` is then gone (handles outlive it).
  @exclusivity(unchecked) private var isClosed = false
  private let handles = Pinned(cloop_handle(), count: 2)
  private let cLoop: OpaquePointer
  /// Set right after the owning `EventLoop` is initialized.
  unowned(unsafe) var owner: EventLoop!

  init(loop: OpaquePointer) {
    cLoop = loop
    ring = .allocate(capacity: capacity)
    front = handles.pointer
    back = handles.pointer + 1
    let me = Unmanaged.passUnretained(self).toOpaque()
    cloop_handle_init(front, readyQueueDrain, me)
    cloop_handle_init(back, readyQueueDrain, me)
  }

  deinit {
    ensure(count == 0, "EventLoop freed with \(count) entries in its ready queue")
    ring.deallocate()
  }

  var isEmpty: Bool { count == 0 }

  // MARK: Queueing

  @inline(__always)
  func push(_ job: UnownedJob) {
    append(.job(job))
  }

  /// Queues `body`; returns its sequence number (see `cancel(_:)`).
  @inline(__always)
  func push(_ body: @escaping () -> Void) -> UInt64 {
    let seq = headSeq &+ UInt64(count)
    append(.closure(body))
    return seq
  }

  func yield(_ continuation: UnsafeContinuation<Void, Never>) {
    append(.yield(continuation))
  }

  @inline(__always)
  private func append(_ entry: consuming Entry) {
    if count == capacity { grow() }
    (ring + ((head + count) & (capacity - 1))).initialize(to: entry)
    count += 1
    if !frontQueued {
      queueFront()
    } else if !backQueued {
      let batch = cloop_batch_count(cLoop)
      if batch == frontBatch {
        frontCount = count  // the front's batch has not begun: join it
      } else {
        backQueued = true
        backBatch = batch
        cloop_call_soon(cLoop, back)
      }
    }
    // else: behind the back handle, which has not run yet either.
  }

  private func queueFront() {
    frontQueued = true
    frontBatch = cloop_batch_count(cLoop)
    frontCount = count
    cloop_call_soon(cLoop, front)
  }

  private func grow() {
    let bigger = UnsafeMutablePointer<Entry>.allocate(capacity: capacity * 2)
    for i in 0..<count {
      (bigger + i).moveInitialize(from: ring + ((head + i) & (capacity - 1)), count: 1)
    }
    ring.deallocate()
    ring = bigger
    capacity *= 2
    head = 0
  }

  /// Gives back the memory of a burst (a million spawns grow the ring to
  /// 24 MiB) once it has run; a burst that large costs far more than this.
  private func shrink() {
    ring.deallocate()
    capacity = 64
    ring = .allocate(capacity: capacity)
    head = 0
  }

  // MARK: Cancelling a closure

  /// The loop's thread check, for a ``CallbackHandle``: after the loop is
  /// gone there is nothing to check against (and nothing left to cancel).
  @inline(__always)
  func checkThread(_ operation: StaticString) {
    if !isClosed && cloop_loop_is_owner(cLoop) == 0 { EventLoop.wrongThread(operation) }
  }

  /// The entry numbered `seq`, if it is still queued.
  private func slot(_ seq: UInt64) -> UnsafeMutablePointer<Entry>? {
    let offset = seq &- headSeq
    guard offset < UInt64(count) else { return nil }
    return ring + ((head + Int(offset)) & (capacity - 1))
  }

  func isPending(_ seq: UInt64) -> Bool {
    guard let entry = slot(seq), case .closure = entry.pointee else { return false }
    return true
  }

  /// Drops the closure numbered `seq` unrun; false if it ran or was
  /// cancelled. The entry stays, as `.cancelled`, until its turn comes.
  func cancel(_ seq: UInt64) -> Bool {
    guard let entry = slot(seq), case .closure = entry.pointee else { return false }
    // Released only after the entry is rewritten: the closure's captures'
    // deinits may queue more (and grow the ring under `entry`).
    let dropped = entry.move()
    entry.initialize(to: .cancelled)
    _ = consume dropped
    return true
  }

  // MARK: Running

  /// Runs the front segment (a handle's C callback): the entries queued
  /// before this batch began.
  fileprivate func drain() {
    let taskExecutor = owner.asUnownedTaskExecutor()
    var n = frontCount
    while n > 0 {
      n -= 1
      let entry = (ring + head).move()
      head = (head + 1) & (capacity - 1)
      headSeq &+= 1
      count -= 1
      switch entry {
      case .job(let job):
        // As the task executor: the task's nonisolated code then runs on
        // without a hop at each await. (Run isolated to the serial
        // executor, every call into a nonisolated async function hops
        // through the queue once more: 392 vs 231 ns per await,
        // DESIGN.md.) An actor whose executor is this loop still runs
        // here: the runtime checks its isolation against `checkIsolated`.
        job.runSynchronously(on: taskExecutor)
      case .closure(let body):
        body()
      case .yield(let continuation):
        // The resume enqueues the task's step behind everything (in the
        // back segment: the front's batch has begun): take it back from
        // the tail and run it here, at the yield's place.
        let before = count, backWasQueued = backQueued
        continuation.resume()
        let tail = ring + ((head + count - 1) & (capacity - 1))
        if count == before + 1, case .job(let job) = tail.pointee {
          count -= 1
          if !backWasQueued && backQueued {  // queued for this step alone
            _ = cloop_handle_cancel(cLoop, back)
            backQueued = false
          }
          job.runSynchronously(on: taskExecutor)
        }
      case .cancelled:
        break
      }
    }
    if count == 0 && capacity > 4096 { shrink() }
    if backQueued {
      swap(&front, &back)
      frontBatch = backBatch
      frontCount = count
      backQueued = false
    } else {
      frontQueued = false
      frontCount = 0
    }
  }

  /// Loop thread, from `EventLoop.deinit`: drops the closures unrun (a
  /// job or a yield left here would be a task never resumed: a stop) and
  /// takes the handles off the C ring.
  func close() {
    isClosed = true
    var dropped: [() -> Void] = []
    while count > 0 {
      let entry = (ring + head).move()
      head = (head + 1) & (capacity - 1)
      headSeq &+= 1
      count -= 1
      switch entry {
      case .closure(let body): dropped.append(body)
      case .cancelled: break
      case .job, .yield: misuse("EventLoop freed while a Swift task was still queued to run on it")
      }
    }
    _ = cloop_handle_cancel(cLoop, front)
    _ = cloop_handle_cancel(cLoop, back)
    frontQueued = false
    backQueued = false
    frontCount = 0
    _ = consume dropped  // their captures' deinits run now, the queue consistent
  }
}

private let readyQueueDrain: cloop_fn = { arg in
  Unmanaged<ReadyQueue>.fromOpaque(arg!).takeUnretainedValue().drain()
}
