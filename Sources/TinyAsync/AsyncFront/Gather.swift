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
  var members: [GatherCore.Member] = []
  for task in repeat each tasks { members.append(GatherCore.Member(future: task.state.future, work: task.state)) }
  try await GatherState(loop: loop, members).run()
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
  let members = tasks.map { GatherCore.Member(future: $0.state.future, work: $0.state) }
  try await GatherState(loop: loop, members).run()
  return try tasks.map { try $0.state.future.takeValue() }
}
