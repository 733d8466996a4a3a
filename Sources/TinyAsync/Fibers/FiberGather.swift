internal import CLoop

/// Waits, in a fiber, for all the given fibers and returns their values in
/// argument order, typed (asyncio's `gather`; the fiber form of
/// ``gather(_:)``).
///
/// When one fails, the others still running are cancelled and waited for;
/// then the first failure by position is thrown (a fiber that failed only
/// because gather cancelled it does not count). If the waiting fiber is
/// cancelled, or an enclosing ``withTimeout(_:_:)`` expires, all of them are
/// cancelled and waited for, then ``TinyAsyncError/cancelled`` (or
/// ``TinyAsyncError/timedOut``) is thrown. Either way no fiber is left
/// running, and no error goes unretrieved.
///
/// ```swift
/// try EventLoop.runFiber {
///     let loop = EventLoop.current!
///     let a = loop.spawnFiber { try sleep(for: .milliseconds(30)); return 1 }
///     let b = loop.spawnFiber { try sleep(for: .milliseconds(10)); return "two" }
///     let (one, two) = try gather(a, b)  // (1, "two"), after 30 ms
/// }
/// ```
@available(*, noasync, message: "in async code, use try await gather(...)")
public func gather<each Value>(
  _ fibers: repeat FiberHandle<each Value>
) throws -> (repeat each Value) {
  var nodes: [FiberNode] = []
  for fiber in repeat each fibers { nodes.append(fiber.state) }
  let state = FiberGather(nodes)
  try state.run()
  var position = 0
  var failure: (any Error)?
  for fiber in repeat each fibers {
    if case .failure(let error)? = fiber.state.future.takeResult(),
      failure == nil, !state.cancelledByGather[position]
    {
      failure = error
    }
    position += 1
  }
  if let failure { throw failure }
  if let interruption = state.interruption { throw interruption }
  return (repeat try (each fibers).state.future.takeResult()!.get())
}

/// The fiber gather's waits. Phase one parks on `trigger`, a C future the
/// fibers' completions fill once all are done or one has failed; phase two
/// cancels the rest and waits for their C tasks with `cloop_gather`, which
/// keeps waiting (cancelling them again) if this fiber is interrupted.
private final class FiberGather {
  let nodes: [FiberNode]
  var cancelledByGather: [Bool]
  private(set) var interruption: TinyAsyncError?

  init(_ nodes: [FiberNode]) {
    self.nodes = nodes
    cancelledByGather = Array(repeating: false, count: nodes.count)
  }

  func run() throws(TinyAsyncError) {
    guard let first = nodes.first else { return }
    let loop = first.loop
    loop.checkThread("gather")
    var pending = nodes.filter { !$0.isDone }.count
    guard pending > 0 else { return }
    requireFiber("gather")
    if !nodes.contains(where: { $0.isDone && $0.hasFailed }) {
      // Heap, not this stack: the loop completes it.
      let trigger = UnsafeMutablePointer<cloop_future>.allocate(capacity: 1)
      trigger.initialize(to: cloop_future())
      cloop_future_init(trigger, loop.cLoop)
      // Every observer has run before this function returns (phase two
      // waits for all the fibers), so none touches `trigger` after it goes.
      defer { trigger.deallocate() }
      for node in nodes where !node.isDone {
        node.whenDone { ok in
          pending -= 1
          if !ok || pending == 0 { _ = cloop_future_set_result(trigger, 0) }
        }
      }
      let rc = fiberSuspend("gather") { cloop_await(trigger, nil) }
      if rc < 0 { interruption = TinyAsyncError(code: rc) }
      if pending > 0 { try cancelAndWait() }
    } else {
      try cancelAndWait()
    }
  }

  private func cancelAndWait() throws(TinyAsyncError) {
    var futures: [UnsafeMutablePointer<cloop_future>?] = []
    for (position, node) in nodes.enumerated() where !node.isDone {
      cancelledByGather[position] = true
      node.cancel()
      futures.append(node.cTaskFuture)
    }
    let rc = futures.withUnsafeBufferPointer { buffer in
      fiberSuspend("gather") { cloop_gather(buffer.baseAddress, buffer.count, nil) }
    }
    // The C tasks return 0; only an interruption of this fiber shows.
    if rc < 0, interruption == nil { interruption = TinyAsyncError(code: rc) }
  }
}

/// Waits, in async code, for all the given fibers and returns their values
/// in argument order: ``gather(_:)`` for ``FiberHandle``s, with the same
/// rules (the first failure by position after the rest are cancelled and
/// finished; cancellation and timeouts cancel them all).
///
/// ```swift
/// try loop.runUntilComplete {
///     let a = loop.spawnFiber { try sleep(for: .milliseconds(20)); return 1 }
///     let b = loop.spawnFiber { 2 }
///     let (x, y) = try await gather(a, b)  // (1, 2)
/// }
/// ```
public func gather<each Value>(
  _ fibers: repeat FiberHandle<each Value>
) async throws -> (repeat each Value) {
  let loop = EventLoop.running(for: "gather")
  let state = GatherState(loop: loop)
  for fiber in repeat each fibers {
    state.watch(fiber.state.future, cancel: fiber.state)
  }
  try await state.run()
  var position = 0
  var failure: (any Error)?
  for fiber in repeat each fibers {
    if case .failure(let error)? = fiber.state.future.takeResult(),
      failure == nil, !state.wasCancelledByGather(position)
    {
      failure = error
    }
    position += 1
  }
  if let failure { throw failure }
  if let interruption = state.interruption { throw interruption }
  return (repeat try (each fibers).state.future.takeResult()!.get())
}
