internal import CLoop
internal import Glibc
public import Logging
import Synchronization

/// An asyncio-style event loop on one thread: callbacks queued to run soon,
/// timers, and calls from other threads, all run by ``runUntilIdle()`` in the order
/// asyncio's `_run_once` defines.
///
/// Each iteration polls the kernel (``backend``), moves due timers onto the
/// ready queue in deadline order (ties in scheduling order), then runs the
/// callbacks that were queued when the batch began; callbacks queued while
/// it runs wait for the next iteration, so no callback can starve timers or
/// I/O.
///
/// A loop is confined to the thread that created it: its methods stop the
/// program with a message when called from another thread. It is
/// `Sendable` only because Swift requires it of an executor (and enqueueing
/// a job is safe from any thread); other threads reach it through
/// ``threadSafeHandle``. It owns its C loop and frees it in `deinit`,
/// dropping unrun closures without running them. Closures you schedule are
/// retained until they run or are cancelled; one that captures the loop
/// keeps it alive until then.
///
/// It is also a Swift `SerialExecutor` and `TaskExecutor`, so ordinary
/// `async` code runs on it: see ``runUntilComplete(_:)`` and
/// ``run(backend:_:)``.
///
/// ```swift
/// let loop = try EventLoop()
/// print("on \(loop.backend)")                              // "on epoll" or "on io_uring"
/// loop.callSoon { print("first") }
/// loop.callLater(.milliseconds(10)) { print("third") }
/// loop.callSoon { print("second") }
/// try loop.runUntilIdle()  // returns when nothing is left to run or wait for
/// ```
public final class EventLoop {
  /// The C loop, for the types of this module.
  let cLoop: OpaquePointer

  /// The backend this loop runs: `.epoll` or `.ioUring`, never `.automatic`.
  public let backend: Backend

  let threadSafeQueue: ThreadSafeQueue
  /// Swift jobs, callSoon closures and yields, in asyncio's order.
  let readyQueue: ReadyQueue
  /// The I/O buffers of the loop's connections and sockets (see
  /// ``bufferPoolLimit``).
  let bufferPool = BufferPool()
  // `@exclusivity(unchecked)`, here and on the hot state of CallbackBox,
  // ReadyQueue, LoopWait, Future, SpawnedNode and TimeoutScope: that state is
  // touched on the loop's thread only, and no access to it spans a call out
  // (each is a read or an in-place update that returns at once), so Swift's
  // run-time exclusivity check cannot fire. It costs a lookup in a
  // thread-local access set per class property access: measured with
  // callgrind, about 370 of the 1,540 instructions of a `callSoon` round.

  /// Timers scheduled and not yet run or cancelled (see `CallbackBox`).
  @exclusivity(unchecked) private var liveHead: CallbackBox?
  @exclusivity(unchecked) private var refCount = 0
  /// Spawned tasks not yet ended (see `SpawnedNode`), and how many were made.
  @exclusivity(unchecked) private var liveSpawned: SpawnedNode?
  @exclusivity(unchecked) var spawnCount = 0
  /// Swift jobs enqueued on this loop's thread, and those that came from
  /// another thread: each is one hop through the queue (tests count them).
  @exclusivity(unchecked) var jobsEnqueued = 0
  @exclusivity(unchecked) var jobsFromOtherThreads = 0
  @exclusivity(unchecked) private var finishingSpawned = false
  /// The main task of `runUntilComplete`, for its deadlock check.
  @exclusivity(unchecked) var mainWatch = MainTaskWatch()

  /// What the loop logs (see ``logger``); set by `init(logger:)`.
  @exclusivity(unchecked) var loopLogger: Logger

  /// Called once when the last spawned task or fiber has ended (an
  /// ``EventLoopGroup``'s drain waits for it); cleared as it is called.
  @exclusivity(unchecked) var onSpawnedDrained: (() -> Void)?

  /// ``retire()`` has freed the C loop: every entry now stops with a
  /// message instead of touching it. Atomic because the thread check of
  /// other threads (an executor's enqueue) reads it; relaxed, a plain load.
  private let retiredFlag = Atomic<Bool>(false)

  /// Creates a loop owned by the calling thread.
  ///
  /// - Parameters:
  ///   - backend: The poller; `.automatic` picks io_uring where it runs.
  ///   - fiberStackSize: The usable bytes of each fiber's stack, private
  ///     and shared alike (`cloop_options.stack_size`); `nil` for the C
  ///     core's 256 KiB. At least 16 KiB. Only the pages a fiber touches
  ///     cost memory, so a large size costs address space, not RAM; each
  ///     stack also has a 64 KiB guard below it. Raise it for fibers that
  ///     keep large values on the stack; lower it for very many fibers on
  ///     a small address space.
  ///   - logger: Where the loop logs (an error no one retrieved, an accept
  ///     retried for want of descriptors); `nil` for a logger labelled
  ///     `TinyAsync`, which goes wherever `LoggingSystem.bootstrap` sends
  ///     swift-log's logs.
  /// - Throws: ``TinyAsyncError/backendUnavailable`` when `backend` names
  ///   one that cannot run here; ``TinyAsyncError/system(errno:message:context:)``
  ///   when the kernel refuses (e.g. `EMFILE` for the epoll or eventfd
  ///   descriptor); ``TinyAsyncError/invalidSetting(code:detail:context:)`` for a
  ///   `fiberStackSize` under 16 KiB, or a `$CLOOP_BACKEND` or
  ///   `$CLOOP_SWITCH` it does not understand.
  ///
  /// ```swift
  /// let loop = try EventLoop(fiberStackSize: 1 << 20, logger: Logger(label: "app.loop"))
  /// ```
  public init(backend: Backend = .automatic, fiberStackSize: Int? = nil, logger: Logger? = nil) throws(TinyAsyncError) {
    var options = cloop_options()
    cloop_options_init(&options)
    options.backend = backend.cValue
    if let fiberStackSize {
      // The C core's own check would name cloop_options.stack_size.
      guard fiberStackSize >= Self.leastFiberStack else {
        throw .invalidSetting(
          code: CLOOP_EBADOPTION,
          detail: "EventLoop(fiberStackSize:): \(fiberStackSize) bytes is under the least, \(Self.leastFiberStack) (16 KiB)")
      }
      options.stack_size = fiberStackSize
    }
    loopLogger = logger ?? defaultLogger
    var loop: OpaquePointer?
    let rc = cloop_loop_new(&loop, &options)
    guard rc == 0, let loop else { throw TinyAsyncError(code: rc < 0 ? rc : -EIO) }
    cLoop = loop
    self.backend = Backend(cloop_loop_backend(loop))
    threadSafeQueue = ThreadSafeQueue(loop: loop)
    readyQueue = ReadyQueue(loop: loop)
    threadSafeQueue.owner = self
    readyQueue.owner = self
    cloop_loop_set_data(loop, Unmanaged.passUnretained(self).toOpaque())
    _ = Self.overflowAdviceSet
  }

  /// The C core's least `stack_size` (`runtime.c`).
  private static let leastFiberStack = 16384

  /// Where this loop logs what must not pass in silence but is no error of
  /// the caller's: a task or fiber failed and nobody retrieved its error, a
  /// listener's accept fails for want of descriptors. Swap it to send those
  /// to your own handler, with your metadata.
  ///
  /// ```swift
  /// var logger = Logger(label: "app.loop")
  /// logger[metadataKey: "loop"] = "main"
  /// loop.logger = logger
  /// ```
  public var logger: Logger {
    get {
      checkThread("EventLoop.logger")
      return loopLogger
    }
    set {
      checkThread("EventLoop.logger")
      loopLogger = newValue
    }
  }

  /// The advice of the C core's stack overflow report, in Swift's terms:
  /// its default names `cloop_options.stack_size`, which Swift code cannot
  /// set. Process-wide; set once (a static's lazy initializer), before the
  /// first loop can run a fiber. A literal: it stays valid for good.
  private static let overflowAdviceSet: Void = {
    let advice: StaticString =
      "raise EventLoop(fiberStackSize:), or keep large values and deep recursion out of fibers: an Array keeps its elements on the heap, and a Swift task (loop.spawn) runs on the thread's own stack"
    cloop_set_overflow_advice(UnsafeRawPointer(advice.utf8Start).assumingMemoryBound(to: CChar.self))
  }()

  /// A loop on a manual clock starting at `start` (tests): ``now`` moves
  /// only by ``advanceClock(by:)`` and, when the loop would wait for its
  /// earliest timer with nothing else to do, by jumping to that deadline
  /// (`cloop_debug_manual_clock`). Timer and timeout tests are then exact
  /// instead of sleepy.
  convenience init(backend: Backend = .automatic, manualClockAt start: Duration) throws(TinyAsyncError) {
    try self.init(backend: backend)
    cloop_debug_manual_clock(cLoop, UInt64(max(0, start.saturatingNanoseconds)))
  }

  /// Moves a manual clock (see ``init(backend:manualClockAt:)``) forward.
  func advanceClock(by delta: Duration) {
    checkThread("EventLoop.advanceClock(by:)")
    cloop_debug_advance_clock(cLoop, UInt64(max(0, delta.saturatingNanoseconds)))
  }

  deinit {
    // A group's loop was freed on its own thread already (retire()).
    if isRetired { return }
    // 0. The C loop can only be taken down on its own thread; say so in
    //    Swift terms rather than let the C core name its own call.
    ensure(
      isOnLoopThread,
      "EventLoop was released on a thread that is not its own: the last reference to a loop must go on the thread that made it (a closure passed to Task {} or Task.detached that captures the loop can take it elsewhere; capture what you need from it instead, or keep the loop alive on its thread)")
    tearDown()
  }

  /// Frees the C loop now, on the loop's thread, rather than in `deinit`,
  /// which runs on whichever thread drops the last reference: an
  /// ``EventLoopGroup``'s loop is referenced from any thread, and its
  /// thread ends at shutdown. From then on every entry stops with a message.
  func retire() {
    checkThread("EventLoop.retire()")
    tearDown()
    retiredFlag.store(true, ordering: .relaxed)
  }

  var isRetired: Bool { retiredFlag.load(ordering: .relaxed) }

  private func tearDown() {
    // 1. Refuse calls from other threads; drop the ones not yet run.
    let drainInFlight = threadSafeQueue.close()
    // 2. Cancel every scheduled closure: it is released, never run.
    readyQueue.close()
    while let box = liveHead { box.cancel() }
    // 3. A wake-up handle already handed to C must come through before the
    //    loop is freed; with nothing else scheduled this runs nothing else.
    if drainInFlight {
      cloop_ref(cLoop)
      while threadSafeQueue.isScheduled { _ = cloop_run_once(cLoop, -1) }
      cloop_unref(cLoop)
    }
    while refCount > 0 {
      refCount -= 1
      cloop_unref(cLoop)
    }
    let rc = cloop_loop_free(cLoop)
    ensure(rc == 0, "cloop_loop_free: \(TinyAsyncError(code: rc))")
    bufferPool.close()
  }

  /// The most bytes of free I/O buffers the loop keeps for reuse, 4 MiB
  /// unless set (per loop; a group's loops each have their own).
  ///
  /// A connection's read-ahead buffer (16 KiB, growing to 256 KiB for a
  /// connection that streams) and its send buffer (taken only when a write
  /// must wait) come from the loop's pool and go back to it when the
  /// connection goes, so a server that churns connections reuses a few
  /// buffers instead of fragmenting the heap. What the pool keeps beyond
  /// this limit is returned to the system at once, so memory follows the
  /// live connections: raise the limit for a server whose connections come
  /// and go in large bursts (fewer `mmap` calls), lower it to 0 to keep
  /// nothing. Setting it lower returns the excess at once.
  ///
  /// ```swift
  /// let loop = try EventLoop()
  /// loop.bufferPoolLimit = 16 << 20  // keep up to 16 MiB of buffers
  /// ```
  public var bufferPoolLimit: Int {
    get {
      checkThread("EventLoop.bufferPoolLimit")
      return bufferPool.limit
    }
    set {
      checkThread("EventLoop.bufferPoolLimit")
      ensure(newValue >= 0, "EventLoop.bufferPoolLimit must be 0 or more, not \(newValue)")
      bufferPool.limit = newValue
    }
  }

  // MARK: Running

  /// Runs iterations until ``stop()`` is called or nothing is left to run
  /// or wait for (no queued callback, pending timer or ``ref()``).
  /// Calling it from inside one of this loop's callbacks is a programming
  /// error and stops the program (as does using the loop from another thread).
  /// - Throws: ``TinyAsyncError`` if polling fails.
  public func runUntilIdle() throws(TinyAsyncError) {
    checkThread("EventLoop.runUntilIdle()")
    let rc = cloop_run(cLoop)
    if rc < 0 { throw TinyAsyncError(code: rc) }
  }

  /// Runs one iteration, waiting at most `timeout` for timers and I/O
  /// (`nil`: as long as needed; zero or negative: not at all).
  /// - Returns: `true` while work remains, `false` when nothing is left.
  /// - Throws: ``TinyAsyncError`` if polling fails.
  @discardableResult
  public func runOnce(timeout: Duration? = nil) throws(TinyAsyncError) -> Bool {
    checkThread("EventLoop.runOnce(timeout:)")
    let rc = cloop_run_once(cLoop, timeout.map { max(0, $0.saturatingNanoseconds) } ?? -1)
    if rc < 0 { throw TinyAsyncError(code: rc) }
    return rc > 0
  }

  /// Makes ``runUntilIdle()`` return after the current iteration's batch of
  /// callbacks; what is still scheduled stays scheduled for the next run.
  public func stop() {
    checkThread("EventLoop.stop()")
    cloop_stop(cLoop)
  }

  /// Keeps ``runUntilIdle()`` from returning for lack of work, e.g. while another
  /// thread will still use ``threadSafeHandle``. Balance each with
  /// ``unref()``; references still held when the loop goes away are dropped.
  public func ref() {
    checkThread("EventLoop.ref()")
    refCount += 1
    cloop_ref(cLoop)
  }

  /// Drops a reference taken with ``ref()``.
  public func unref() {
    checkThread("EventLoop.unref()")
    ensure(refCount > 0, "EventLoop.unref() without a matching ref()")
    refCount -= 1
    cloop_unref(cLoop)
  }

  // MARK: Time

  /// The loop's clock: monotonic time (`CLOCK_MONOTONIC`, counted from an
  /// unspecified fixed point such as boot), read once per iteration after
  /// the poll, as libuv does. Timer delays count from it; the difference of
  /// two readings is elapsed time.
  ///
  /// ```swift
  /// let start = loop.now
  /// loop.callLater(.milliseconds(20)) { print("after \(loop.now - start)") }
  /// ```
  public var now: Duration {
    checkThread("EventLoop.now")
    return .nanoseconds(Int64(clamping: cloop_now(cLoop)))
  }

  /// Refreshes ``now`` from the system clock, e.g. after a long callback.
  public func updateTime() {
    checkThread("EventLoop.updateTime()")
    cloop_update_time(cLoop)
  }

  // MARK: Scheduling

  /// Queues `body` to run in the next batch, after everything queued
  /// before it (asyncio's `call_soon`): callbacks and the steps of tasks
  /// run in the order they were queued. From inside a callback or a task,
  /// `body` runs in the next iteration, not the current one.
  /// - Returns: a handle that can cancel the call; ignore it if you won't.
  @discardableResult
  public func callSoon(_ body: @escaping () -> Void) -> CallbackHandle {
    checkThread("EventLoop.callSoon")
    return CallbackHandle(queue: readyQueue, seq: readyQueue.push(body))
  }

  /// Schedules `body` to run `delay` after ``now`` (asyncio's
  /// `call_later`); a negative delay acts as zero. Timers with equal
  /// deadlines run in the order they were scheduled.
  /// - Returns: a handle that can cancel the timer; ignore it if you won't.
  @discardableResult
  public func callLater(_ delay: Duration, _ body: @escaping () -> Void) -> TimerHandle {
    checkThread("EventLoop.callLater")
    let box = CallbackBox(loop: self, body: body)
    let rc = cloop_call_later(cLoop, box.timer, delay.saturatingNanoseconds)
    // The only failure is -ENOMEM growing the heap; Swift traps on OOM too.
    ensure(rc == 0, "cloop_call_later: \(TinyAsyncError(code: rc))")
    link(box)
    return TimerHandle(box: box)
  }

  /// Number of timers waiting for their deadline.
  public var pendingTimerCount: Int {
    checkThread("EventLoop.pendingTimerCount")
    return cloop_timer_count(cLoop)
  }

  /// A `Sendable` handle through which any thread can queue closures on
  /// this loop. See ``ThreadSafeHandle``.
  ///
  /// Taking one turns off ``runUntilComplete(_:)``'s deadlock check for the
  /// loop's life (another thread may call any time): one relaxed atomic
  /// store.
  public var threadSafeHandle: ThreadSafeHandle {
    threadSafeQueue.noteHandedOut()
    return ThreadSafeHandle(queue: threadSafeQueue)
  }

  /// A handle for this module's own hops to the loop (a cancellation
  /// handler's), which do not turn off the deadlock check: each is queued
  /// at once, and a queued call keeps the loop running.
  var internalThreadSafeHandle: ThreadSafeHandle {
    ThreadSafeHandle(queue: threadSafeQueue)
  }

  // MARK: Spawned tasks

  func linkSpawned(_ node: SpawnedNode) {
    node.next = liveSpawned
    liveSpawned?.prev = node
    liveSpawned = node
  }

  /// Cancels `node` if the loop is finishing its spawned work: one spawned
  /// while the others unwind (an accept that completed as its listener
  /// closed, say) would otherwise keep the loop running (the C core's
  /// closing does the same in its next round). Call it once the node is
  /// ready to be cancelled.
  func cancelIfFinishing(_ node: SpawnedNode) {
    if finishingSpawned { node.cancel() }
  }

  func unlinkSpawned(_ node: SpawnedNode) {
    if let prev = node.prev { prev.next = node.next } else { liveSpawned = node.next }
    node.next?.prev = node.prev
    node.next = nil
    node.prev = nil
    if finishingSpawned && liveSpawned == nil { cloop_stop(cLoop) }
    if liveSpawned == nil, let drained = onSpawnedDrained {
      onSpawnedDrained = nil
      drained()
    }
  }

  /// True while a spawned task or fiber has not ended.
  var hasLiveSpawned: Bool { liveSpawned != nil }

  /// Cancels the spawned tasks still running and runs the loop until they
  /// have ended (asyncio.run's clean-up of remaining tasks).
  func finishSpawned() throws(TinyAsyncError) {
    guard liveSpawned != nil else { return }
    finishingSpawned = true
    defer { finishingSpawned = false }
    var node = liveSpawned
    while let n = node {
      n.cancel()
      node = n.next
    }
    while liveSpawned != nil {
      let rc = cloop_run(cLoop)
      if rc < 0 { throw TinyAsyncError(code: rc) }
    }
  }

  // MARK: The list of live boxes

  private func link(_ box: CallbackBox) {
    box.next = liveHead
    liveHead?.prev = box
    liveHead = box
    box.isLinked = true
  }

  func unlink(_ box: CallbackBox) {
    ensure(box.isLinked, "internal error: unlinking a CallbackBox that is not linked")
    box.isLinked = false
    box.next?.prev = box.prev
    if let prev = box.prev {
      prev.next = box.next  // may drop the list's reference; the caller holds `box`
    } else {
      liveHead = box.next
    }
    box.prev = nil
    box.next = nil
  }
}

// Loop-confined in all but the executor's enqueue; see the type's comment.
extension EventLoop: @unchecked Sendable {}

extension EventLoop {
  /// True on the thread that owns this loop (never, once an
  /// ``EventLoopGroup``'s shutdown has ended it).
  public var isOnLoopThread: Bool { !isRetired && cloop_loop_is_owner(cLoop) != 0 }

  /// The loop whose ``runUntilIdle()`` (or ``runUntilComplete(_:)``) is running on
  /// this thread: the loop of the async code, fiber or callback calling it.
  /// `nil` outside a running loop.
  public static var current: EventLoop? {
    guard let cLoop = cloop_running_loop(), let data = cloop_loop_data(cLoop) else { return nil }
    return Unmanaged<EventLoop>.fromOpaque(data).takeUnretainedValue()
  }

  /// ``current``, or a stop naming `operation` when no loop runs here.
  static func running(for operation: StaticString) -> EventLoop {
    guard let loop = current else {
      misuse("\(operation) needs a running EventLoop on this thread (call it from code started by EventLoop.run / runUntilComplete / spawn, or a fiber)")
    }
    return loop
  }

  /// Stops the program unless the caller is on this loop's thread; every
  /// public entry of a loop-confined type starts with it. The cost on the
  /// loop's thread is a relaxed load of the retired flag (a plain load)
  /// and one C call that compares the loop's owner with a thread-local
  /// address (`cloop_loop_is_owner`); the message is built only on
  /// failure, out of line: it names a loop the group's shutdown ended
  /// apart from a wrong thread.
  @inline(__always)
  func checkThread(_ operation: StaticString) {
    if !isOnLoopThread { isRetired ? Self.usedAfterShutdown(operation) : Self.wrongThread(operation) }
  }

  @inline(never)
  static func usedAfterShutdown(_ operation: StaticString) -> Never {
    misuse("\(operation) was called on a loop of an EventLoopGroup that has been shut down: its thread has ended, and with it the loop; finish using a group's loops (and their listeners, connections and futures) before EventLoopGroup.shutdown(deadline:)")
  }

  @inline(never)
  static func wrongThread(_ operation: StaticString) -> Never {
    misuse("\(operation) was called on a thread that is not its loop's: a loop's objects belong to the thread that runs it; use them from tasks on that loop (loop.spawn, not Task {} or Task.detached, which run elsewhere), or hop there with loop.threadSafeHandle")
  }
}
