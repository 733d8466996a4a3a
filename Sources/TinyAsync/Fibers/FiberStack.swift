internal import CLoop

/// Where a fiber's frames live while it is parked: the `stack:` of
/// ``EventLoop/spawnFiber(name:stack:_:)``.
///
/// - ``private``: a guarded stack of its own from the loop's pool (the
///   default). A switch is a register swap; a parked fiber keeps the pages
///   it touched resident (4 KiB at least; a million fibers parked after a
///   yield took 4.8 GiB here).
/// - ``shared``: it runs on the loop's one shared stack, and when another
///   shared fiber needs that stack, the bytes this one uses there (about
///   500 for a shallow fiber) are copied out to the heap, and back in
///   before it resumes (a copy stack). Resuming a shared fiber after
///   another then costs a copy of both fibers' used bytes, but a parked one
///   costs only those bytes (the same million: 1.4 GiB, and spawning was
///   4 times faster): the choice for very many small fibers.
///
/// Every fiber operation of this module works on both. What a shared fiber
/// must not do is let anything else use the address of one of its locals
/// while it is parked (its stack then holds another fiber's frames): only
/// code that reaches for raw pointers can, e.g. by handing a pointer to a
/// local to another fiber or to a C call that keeps it. Deep recursion
/// works but makes every switch copy the deep stack.
///
/// ```swift
/// let loop = try EventLoop()
/// try loop.runFiberUntilComplete {
///     // 100,000 sleepers, each parked in about 2 KiB instead of 5 KiB or more.
///     let sleepers = (0..<100_000).map { i in
///         loop.spawnFiber(stack: .shared) { try sleep(for: .milliseconds(i % 1000)) }
///     }
///     for sleeper in sleepers { try sleeper.get() }
/// }
/// ```
public enum FiberStack: Sendable, Hashable {
  /// A guarded stack of the fiber's own (the default).
  case `private`
  /// The loop's one shared stack, its used part copied out while it is
  /// parked.
  case shared

  var cValue: cloop_stack_mode {
    switch self {
    case .private: CLOOP_STACK_PRIVATE
    case .shared: CLOOP_STACK_SHARED
    }
  }
}
