internal import CLoop

// Fibers: synchronous Swift code on the C coroutine level (a C task per
// fiber, on its own guarded stack or the shared one). This file is the
// switch's Swift side: everything that parks a fiber goes through
// `fiberSuspend`, which keeps the Swift runtime's exclusivity bookkeeping
// right across the switch, and a fiber starts in `fiberEntry`.

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

/// What a fiber keeps at the bottom of its stack for its whole life: the
/// runtime's two words of exclusivity state. Its C task's user word points
/// here (`cloop_task_set_user`), which is also how a fiber is told from a
/// C task that is none: one C call finds it, where a pthread key cost a
/// `pthread_getspecific` per lookup and a `pthread_setspecific` per switch.
/// A shared stack is back at the same addresses whenever its fiber runs,
/// so this works there too.
struct FiberFrame {
  var exclusivity: (UInt, UInt) = (0, 0)

  /// The address of `frame.exclusivity` (a constant offset).
  @inline(__always)
  static func exclusivityState(_ frame: UnsafeMutablePointer<FiberFrame>) -> UnsafeMutableRawPointer {
    UnsafeMutableRawPointer(frame) + MemoryLayout<FiberFrame>.offset(of: \.exclusivity)!
  }
}

/// The running fiber's frame, or nil outside fibers.
@inline(__always)
private func currentFiberFrame() -> UnsafeMutablePointer<FiberFrame>? {
  // Set from a FiberFrame pointer by `fiberEntry`, for the fiber's life.
  cloop_current_task_user()?.assumingMemoryBound(to: FiberFrame.self)
}

/// `true` while a fiber runs on this thread.
var isInFiber: Bool { currentFiberFrame() != nil }

/// Stops the program: `operation` parks a fiber and was called elsewhere.
func fiberMisuse(_ operation: StaticString) -> Never {
  misuse("\(operation) was called outside a fiber; it suspends the fiber that calls it. Start one with EventLoop.spawnFiber / runFiber, or, in async code, use the async function of the same name with await")
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

// MARK: The entry

/// The C task's body: the fiber's Swift entry, on the fiber's stack. It
/// returns 0 whatever the Swift body did: the outcome lives in the Swift
/// future, and a failed C task would be reported again by the C core.
let fiberEntry: cloop_task_fn = { arg in
  let node = Unmanaged<FiberNode>.fromOpaque(arg!).takeRetainedValue()
  let task = cloop_current_task()!
  var frame = FiberFrame()
  withUnsafeMutablePointer(to: &frame) { frame in
    let state = FiberFrame.exclusivityState(frame)
    swiftEnterThreadLocalContext(state)
    cloop_task_set_user(task, frame)
    node.run()
    // Not left pointing into a stack that goes back to the pool.
    cloop_task_set_user(task, nil)
    swiftExitThreadLocalContext(state)
  }
  return 0
}
