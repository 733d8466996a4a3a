/// Waits for all the given tasks and returns their values in argument order,
/// typed (asyncio's `gather`):
///
/// ```swift
/// try EventLoop.run {
///     let loop = EventLoop.current!
///     let a = loop.spawn { try await sleep(for: .milliseconds(30)); return 1 }
///     let b = loop.spawn { try await sleep(for: .milliseconds(10)); return "two" }
///     let (one, two) = try await gather(a, b)  // (1, "two"), after 30 ms
/// }
/// ```
///
/// When one fails, the others that are still running are cancelled and
/// awaited; then the first failure by position is thrown (a task that failed
/// only because gather cancelled it does not count). If the waiting task
/// is cancelled, or an enclosing ``withTimeout(_:_:)`` expires, all of them
/// are cancelled and awaited, then ``TinyAsyncError/cancelled`` (or
/// ``TinyAsyncError/timedOut``) is thrown. Either way no task is left
/// running, and no error goes unretrieved.
public nonisolated(nonsending) func gather<each Value>(
  _ tasks: repeat TaskHandle<each Value>
) async throws -> (repeat each Value) {
  let loop = EventLoop.running(for: "gather")
  let state = GatherState(loop: loop)
  for task in repeat each tasks {
    state.watch(task.state.future, cancel: task.state)
  }
  try await state.run()
  // Every task is done: collect in argument order.
  var position = 0
  var failure: (any Error)?
  for task in repeat each tasks {
    if let error = task.state.future.takeError(),
      failure == nil, !state.wasCancelledByGather(position)
    {
      failure = error
    }
    position += 1
  }
  if let failure { throw failure }
  if let interruption = state.interruption { throw interruption }
  return (repeat try (each tasks).state.future.takeValue())
}

/// Waits for all the tasks of an array and returns their values in its
/// order: ``gather(_:)`` for any number of tasks of one type (asyncio's
/// `gather(*tasks)`), with the same rules for failures, cancellation and
/// timeouts.
///
/// ```swift
/// try EventLoop.run {
///     let loop = EventLoop.current!
///     let tasks = (1...100).map { i in loop.spawn { try await sleep(for: .milliseconds(i)); return i } }
///     let values = try await gather(tasks)  // [1, 2, ..., 100], after 100 ms
/// }
/// ```
public nonisolated(nonsending) func gather<Value>(_ tasks: [TaskHandle<Value>]) async throws -> [Value] {
  let loop = EventLoop.running(for: "gather")
  let state = GatherState(loop: loop)
  for task in tasks {
    state.watch(task.state.future, cancel: task.state)
  }
  try await state.run()
  // Every task is done; each result is taken (so marked retrieved), and
  // the first failure by position wins.
  var failure: (any Error)?
  for (position, task) in tasks.enumerated() {
    if let error = task.state.future.takeError(),
      failure == nil, !state.wasCancelledByGather(position)
    {
      failure = error
    }
  }
  if let failure { throw failure }
  if let interruption = state.interruption { throw interruption }
  return try tasks.map { try $0.state.future.takeValue() }
}
