internal import CLoop
internal import Glibc

// Fibers: synchronous Swift code on the C coroutine level (a C task per
// fiber, on its own guarded stack). Everything that parks a fiber goes
// through `fiberSuspend`, which keeps the Swift runtime's exclusivity
// bookkeeping right across the switch.

// MARK: The exclusivity state

// The runtime keeps the accesses in progress (`modify`, `inout`, class
// properties) in one per-thread list. A fiber that parks inside an access
// leaves its entry there, on its own stack; the next fiber's accesses would
// then chain through it, and a conflict check could walk into memory the
// parked fiber has since changed. Swift's own tasks pop their accesses off
// the thread's list when they suspend and push them back when they resume,
// with these two functions (exported by libswiftCore) and two words of state
// per task; a fiber does the same around every switch.
@_silgen_name("swift_task_enterThreadLocalContext")
private func swiftEnterThreadLocalContext(_ state: UnsafeMutableRawPointer)

@_silgen_name("swift_task_exitThreadLocalContext")
private func swiftExitThreadLocalContext(_ state: UnsafeMutableRawPointer)

/// The frame of the fiber that last gained the thread (see `FiberFrame`),
/// or nil on threads where none has run or after the last one ended. A
/// fiber sets it whenever it gains the thread -- at its start and after
/// each switch back -- so while a fiber runs it is that fiber's. Between
/// fibers it is left stale rather than cleared (a `pthread_setspecific`
/// costs more than the rest of the bookkeeping): the check that a fiber
/// runs is `cloop_current_task()`, and the frame names its task.
/// (Swift has no thread-local variables; this is a pthread key.)
private let fiberKey: pthread_key_t = {
  var key = pthread_key_t()
  let rc = pthread_key_create(&key, nil)
  ensure(rc == 0, "pthread_key_create: \(rc)")
  return key
}()

/// What a fiber keeps at the bottom of its stack for its whole life: the
/// runtime's two words of exclusivity state, and its C task (to tell it
/// from a C task that is no fiber). A shared stack is back at the same
/// addresses whenever its fiber runs, so this works there too.
struct FiberFrame {
  var exclusivity: (UInt, UInt) = (0, 0)
  let task: OpaquePointer

  /// The address of `frame.exclusivity` (a constant offset).
  @inline(__always)
  static func exclusivityState(_ frame: UnsafeMutablePointer<FiberFrame>) -> UnsafeMutableRawPointer {
    UnsafeMutableRawPointer(frame) + MemoryLayout<FiberFrame>.offset(of: \.exclusivity)!
  }
}

/// The running fiber's frame, or nil outside fibers.
@inline(__always)
private func currentFiberFrame() -> UnsafeMutablePointer<FiberFrame>? {
  guard let task = cloop_current_task(), let raw = pthread_getspecific(fiberKey) else { return nil }
  let frame = raw.assumingMemoryBound(to: FiberFrame.self)  // set from a FiberFrame pointer
  return frame.pointee.task == task ? frame : nil
}

/// `true` while a fiber runs on this thread.
var isInFiber: Bool { currentFiberFrame() != nil }

/// Stops the program: `operation` parks a fiber and was called elsewhere.
func fiberMisuse(_ operation: StaticString) -> Never {
  fatalError("\(operation) was called outside a fiber; it suspends the fiber that calls it. Start one with EventLoop.spawnFiber / runFiber, or, in async code, use the async function of the same name with await")
}

/// Stops the program with a message naming `operation` unless a fiber runs.
@inline(__always)
func requireFiber(_ operation: StaticString) {
  if !isInFiber { fiberMisuse(operation) }
}

/// The one way a fiber suspends: runs `body` -- a C call that may park the
/// current C task (`cloop_sleep`, `cloop_await`, a socket call, a lock) --
/// with the fiber's exclusivity accesses taken off the thread, and puts them
/// back once it returns. Outside a fiber it stops the program with a message
/// naming `operation`.
///
/// `body` must not run Swift code that makes accesses the fiber needs after
/// the switch; a plain C call is what it is for.
@inline(__always)
func fiberSuspend<R>(_ operation: StaticString, _ body: () -> R) -> R {
  guard let frame = currentFiberFrame() else { fiberMisuse(operation) }
  let state = FiberFrame.exclusivityState(frame)
  swiftExitThreadLocalContext(state)
  let result = body()
  pthread_setspecific(fiberKey, frame)
  swiftEnterThreadLocalContext(state)
  return result
}

/// ``fiberSuspend(_:_:)`` for a C call returning `>= 0` or `-errno`:
/// returns the non-negative result, throws the error for a negative one
/// (`-ECANCELED` is ``TinyAsyncError/cancelled``, `-ETIMEDOUT`
/// ``TinyAsyncError/timedOut``, ...).
@inline(__always)
@discardableResult
func fiberCall<R: FixedWidthInteger & SignedInteger>(
  _ operation: StaticString, _ body: () -> R
) throws(TinyAsyncError) -> R {
  let result = fiberSuspend(operation, body)
  if result < 0 { throw TinyAsyncError(code: Int32(clamping: result)) }
  return result
}

// MARK: Fiber state

/// A fiber's bookkeeping, on the loop's list of live spawned work (with the
/// async front's tasks) until its body returns, so that ``EventLoop/runFiber(_:)``
/// and ``EventLoop/runUntilComplete(_:)`` cancel and finish what is left.
///
/// The C task holds one reference while its body may still run; this object
/// holds one on the C task (its future serves `gather`) until it goes. It
/// keeps its loop alive through its future, so the C task is released
/// before the loop is freed.
class FiberNode: SpawnedNode, @unchecked Sendable {  // loop thread only
  let loop: EventLoop
  fileprivate(set) var cTask: OpaquePointer?
  private let givenName: String?
  private let number: Int
  /// The body has begun running (or has been skipped, if cancelled first).
  final var started = false
  /// The body has returned or thrown; the result is in the future.
  final var finished = false
  final var cancelRequested = false

  init(loop: EventLoop, name: String?, number: Int) {
    self.loop = loop
    givenName = name
    self.number = number
  }

  deinit {
    if let cTask { cloop_task_release(cTask) }
  }

  final var name: String { givenName ?? "fiber-\(number)" }

  /// The C task's own future: complete once the C task has ended (just
  /// after the Swift result is in).
  final var cTaskFuture: UnsafeMutablePointer<cloop_future> { cloop_task_future(cTask!) }

  /// Runs the body on the fiber's stack (abstract).
  func run() { fatalError("abstract") }
  /// Runs `observer(succeeded)` when the result is in (abstract).
  func whenDone(_ observer: @escaping (Bool) -> Void) { fatalError("abstract") }
  var isDone: Bool { fatalError("abstract") }
  var hasFailed: Bool { fatalError("abstract") }

  /// Requests cancellation: the suspension the fiber is parked in (or its
  /// next one) throws ``TinyAsyncError/cancelled``; a fiber that has not
  /// started never runs its body. Loop thread only.
  override final func cancel() {
    loop.checkThread("FiberHandle.cancel")
    guard !finished else { return }
    cancelRequested = true
    if started, let cTask { _ = cloop_task_cancel(cTask) }
  }
}

final class FiberState<Value>: FiberNode, @unchecked Sendable {
  let future: Future<Value>
  private var body: (() throws -> Value)?

  init(loop: EventLoop, name: String?, number: Int, body: @escaping () throws -> Value) {
    future = Future(on: loop)
    self.body = body
    super.init(loop: loop, name: name, number: number)
  }

  // No `Result<Value, _>` and no `Optional.take()` here: unspecialized
  // (spawnFiber is called from other modules), each asked the runtime for
  // its type's metadata, a locked hash lookup (callgrind: 450 of the 7,500
  // instructions of a shared-stack spawn).
  override func run() {
    started = true
    let body = self.body!
    self.body = nil
    if cancelRequested {
      finish()
      future.fail(TinyAsyncError.cancelled)  // cancelled before it ran
      return
    }
    do {
      let value = try body()
      finish()
      future.succeed(value)
    } catch {
      finish()
      future.fail(error)
    }
  }

  /// The body is over: off the loop's list of live work, before the
  /// future's observers and waiters run.
  private func finish() {
    finished = true
    loop.unlinkSpawned(self)
    cloop_unref(loop.cLoop)
  }

  override func whenDone(_ observer: @escaping (Bool) -> Void) {
    future.whenComplete(observer)
  }

  override var isDone: Bool { future.isDone }

  override var hasFailed: Bool {
    if case .failure? = future.peekResult { return true }
    return false
  }
}

/// The C task's body: the fiber's Swift entry, on the fiber's stack. It
/// returns 0 whatever the Swift body did: the outcome lives in the Swift
/// future, and a failed C task would be reported again by the C core.
private let fiberEntry: cloop_task_fn = { arg in
  let node = Unmanaged<FiberNode>.fromOpaque(arg!).takeRetainedValue()
  var frame = FiberFrame(task: cloop_current_task()!)
  withUnsafeMutablePointer(to: &frame) { frame in
    let state = FiberFrame.exclusivityState(frame)
    swiftEnterThreadLocalContext(state)
    pthread_setspecific(fiberKey, frame)
    node.run()
    // Not left pointing into a stack that goes back to the pool.
    pthread_setspecific(fiberKey, nil)
    swiftExitThreadLocalContext(state)
  }
  return 0
}

// MARK: Spawning

extension EventLoop {
  /// Starts `body` as a fiber on this loop and returns its handle. A fiber
  /// is synchronous Swift code on its own stack (a C task of the loop's
  /// coroutine level): where it waits -- ``sleep(for:)``,
  /// ``Future/get()``, ``FiberHandle/get()``, ``gather(_:)``,
  /// inside ``withTimeout(_:_:)`` -- it parks and the loop runs other work,
  /// at the cost of a register switch instead of an async task's
  /// continuation. It first runs in a coming iteration, after what is
  /// already queued.
  ///
  /// A running fiber keeps ``run()`` going; ``runFiber(_:)`` and
  /// ``runUntilComplete(_:)`` cancel and finish the ones still running when
  /// their main work returns. A fiber keeps its loop alive until it ends.
  ///
  /// Inside a fiber, Swift async code cannot be awaited: the closure is
  /// synchronous. Spawn an async task with ``spawn(name:isolation:_:)`` and
  /// hand its result over through a ``Future`` the fiber calls `get()` on.
  ///
  /// `@TaskLocal` does not cross fibers. A fiber is no Swift task: it does
  /// not see the task-local values bound where it was spawned, and all the
  /// fibers of a thread share one task-local context (the thread's, or that
  /// of the Swift task that runs the loop). So do not bind one with
  /// `withValue` around code that suspends the fiber: the fibers that run
  /// meanwhile would see the binding, and the bindings would be undone out
  /// of order. Pass such values as arguments instead.
  ///
  /// ```swift
  /// let loop = try EventLoop()
  /// let worker = loop.spawnFiber(name: "worker") { () throws -> Int in
  ///     try sleep(for: .milliseconds(10))   // parks this fiber only
  ///     return 42
  /// }
  /// let answer = try loop.runFiber { try worker.get() }  // 42
  /// ```
  ///
  /// `stack` chooses where the fiber's frames live (see ``FiberStack``):
  /// a guarded stack of its own, or the loop's shared stack, for very many
  /// small fibers.
  @discardableResult
  public func spawnFiber<Value>(
    name: String? = nil,
    stack: FiberStack = .private,
    _ body: @escaping () throws -> Value
  ) -> FiberHandle<Value> {
    checkThread("EventLoop.spawnFiber")
    spawnCount += 1
    let state = FiberState<Value>(loop: self, name: name, number: spawnCount, body: body)
    let arg = Unmanaged.passRetained(state as FiberNode).toOpaque()
    var task: OpaquePointer?
    var options = cloop_spawn_options(name: nil, stack: stack.cValue)
    let rc: Int32
    if let name {
      rc = name.withCString { name in
        options.name = name
        return cloop_spawn_ex(cLoop, &task, fiberEntry, arg, &options)
      }
    } else {
      rc = cloop_spawn_ex(cLoop, &task, fiberEntry, arg, &options)
    }
    // The only failure is -ENOMEM (a task record or a stack); Swift traps
    // on running out of memory too.
    ensure(rc == 0, "EventLoop.spawnFiber: cloop_spawn_ex: \(TinyAsyncError(code: rc))")
    state.cTask = task
    linkSpawned(state)
    cloop_ref(cLoop)  // it may wait for another thread (FutureCompleter)
    cancelIfFinishing(state)
    return FiberHandle(state: state)
  }

  /// Runs `body` as this loop's main fiber until it returns, and returns
  /// what it returned (or rethrows what it threw): ``runUntilComplete(_:)``
  /// for fibers. Then cancels the fibers and tasks it started that are
  /// still running and runs the loop until they have ended.
  ///
  /// ```swift
  /// let loop = try EventLoop()
  /// let total = try loop.runFiber { () throws -> Int in
  ///     let a = loop.spawnFiber { try sleep(for: .milliseconds(30)); return 1 }
  ///     let b = loop.spawnFiber { try sleep(for: .milliseconds(10)); return 2 }
  ///     let (x, y) = try gather(a, b)
  ///     return x + y
  /// }
  /// ```
  /// Call it on the loop's thread, not from inside the loop's own callbacks
  /// or fibers.
  public func runFiber<Value>(_ body: @escaping () throws -> Value) throws -> Value {
    checkThread("EventLoop.runFiber")
    let main = spawnFiber(name: "main", body)
    let cLoop = self.cLoop
    main.state.future.whenComplete { _ in cloop_stop(cLoop) }
    while !main.isDone {
      let rc = cloop_run(cLoop)
      if rc < 0 { throw TinyAsyncError(code: rc) }
    }
    try finishSpawned()
    return try main.state.future.takeResult()!.get()
  }

  /// asyncio's `run` for fibers: makes a loop on this thread with
  /// `backend`, runs `body` on it as the main fiber (see ``runFiber(_:)``),
  /// and closes the loop.
  ///
  /// ```swift
  /// let value = try EventLoop.runFiber { () throws -> String in
  ///     try sleep(for: .milliseconds(5))
  ///     return "done"
  /// }
  /// ```
  public static func runFiber<Value>(
    backend: Backend = .automatic,
    _ body: @escaping () throws -> Value
  ) throws -> Value {
    let loop = try EventLoop(backend: backend)
    return try loop.runFiber(body)
  }
}
