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
  var members: [GatherCore.Member] = []
  var nodes: [FiberNode] = []
  for fiber in repeat each fibers {
    members.append(GatherCore.Member(future: fiber.state.future, work: fiber.state))
    nodes.append(fiber.state)
  }
  try FiberGather(members, nodes).run()
  return (repeat try (each fibers).state.future.takeValue())
}

/// Waits, in a fiber, for all the fibers of an array and returns their
/// values in its order: ``gather(_:)`` for any number of fibers of one
/// type (asyncio's `gather(*fibers)`), with the same rules for failures,
/// cancellation and timeouts. An empty array gives an empty array.
///
/// ```swift
/// try EventLoop.runFiber {
///     let loop = EventLoop.current!
///     let fibers = (1...100).map { i in loop.spawnFiber { try sleep(for: .milliseconds(i)); return i } }
///     let values = try gather(fibers)  // [1, 2, ..., 100], after 100 ms
/// }
/// ```
@available(*, noasync, message: "in async code, use try await gather(fibers)")
public func gather<Value>(_ fibers: [FiberHandle<Value>]) throws -> [Value] {
  let members = fibers.map { GatherCore.Member(future: $0.state.future, work: $0.state) }
  try FiberGather(members, fibers.map { $0.state }).run()
  return try fibers.map { try $0.state.future.takeValue() }
}

/// gather's waits in a fiber, over a ``GatherCore``. Phase one parks on
/// `trigger`, a C future that the members' completions fill once the core
/// is settled; phase two cancels the rest and waits for their C tasks with
/// `cloop_gather`, which keeps waiting (cancelling them again) if this
/// fiber is interrupted.
private final class FiberGather {
  let core: GatherCore
  /// The members' fibers, in the same order.
  let nodes: [FiberNode]

  init(_ members: [GatherCore.Member], _ nodes: [FiberNode]) {
    core = GatherCore(members)
    self.nodes = nodes
  }

  /// Waits until every member is done, then throws as
  /// ``GatherCore/collect()`` does. A gather of finished fibers answers
  /// anywhere; one that must wait only in a fiber.
  func run() throws {
    if core.pending > 0 {
      let loop = nodes[0].loop
      loop.checkThread("gather")
      requireFiber("gather")
      if !core.isSettled { waitUntilSettled(loop) }
      if core.pending > 0 { cancelAndWait() }
    }
    try core.collect()
  }

  private func waitUntilSettled(_ loop: EventLoop) {
    // Heap, not this stack: the loop completes it.
    let trigger = Pinned(cloop_future())
    cloop_future_init(trigger.pointer, loop.cLoop)
    // The members' completions fill it until the wait is over; later ones
    // (in phase two) find no `onChange`.
    let fill = trigger.pointer
    core.onChange = { [core] in
      if core.isSettled && cloop_future_done(fill) == 0 { _ = cloop_future_set_result(fill, 0) }
    }
    let rc = fiberSuspend("gather") { cloop_await(trigger.pointer, nil) }
    core.onChange = nil
    if rc < 0 { core.interruption = TinyAsyncError(code: rc) }
  }

  private func cancelAndWait() {
    let futures: [UnsafeMutablePointer<cloop_future>?] = core.cancelTheRest().map { nodes[$0].cTaskFuture }
    let rc = futures.withUnsafeBufferPointer { buffer in
      fiberSuspend("gather") { cloop_gather(buffer.baseAddress, buffer.count, nil) }
    }
    // The C tasks return 0; only an interruption of this fiber shows.
    if rc < 0, core.interruption == nil { core.interruption = TinyAsyncError(code: rc) }
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
  var members: [GatherCore.Member] = []
  for fiber in repeat each fibers { members.append(GatherCore.Member(future: fiber.state.future, work: fiber.state)) }
  try await GatherState(loop: loop, members).run()
  return (repeat try (each fibers).state.future.takeValue())
}

/// Waits, in async code, for all the fibers of an array and returns their
/// values in its order, with the rules of ``gather(_:)``.
public func gather<Value>(_ fibers: [FiberHandle<Value>]) async throws -> [Value] {
  let loop = EventLoop.running(for: "gather")
  let members = fibers.map { GatherCore.Member(future: $0.state.future, work: $0.state) }
  try await GatherState(loop: loop, members).run()
  return try fibers.map { try $0.state.future.takeValue() }
}
