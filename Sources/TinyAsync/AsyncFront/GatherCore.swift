/// The part of gather that does not wait, shared by its four forms (tasks
/// or fibers; awaited, or in a fiber): the members' futures in argument
/// order, which are still pending, whether one failed on its own, which
/// ones gather cancelled, and the answer once every one is done.
///
/// The forms differ only in how they wait, in two phases (`GatherState`
/// for a task, `FiberGather` for a fiber): first until ``isSettled``,
/// interruptibly; then, after ``cancelTheRest()`` if members are left,
/// until all are done, uninterruptibly (no member is left running). Then
/// ``collect()`` throws or returns, and the form takes the typed values.
/// Loop thread only.
final class GatherCore {
  /// One member: its result, and how to cancel it.
  struct Member {
    let future: any AnyFuture
    let work: SpawnedNode
  }

  let members: [Member]
  private var cancelledByGather: [Bool]
  /// Members not done yet.
  private(set) var pending = 0
  /// A member failed on its own (not because gather cancelled it).
  private(set) var failed = false
  /// Why the waiting task or fiber stopped waiting early (cancelled,
  /// timed out), if it did.
  var interruption: TinyAsyncError?
  /// Runs after each member completes, once the state above is updated.
  var onChange: (() -> Void)?

  /// Watches `members`' completions from now on.
  init(_ members: [Member]) {
    self.members = members
    cancelledByGather = Array(repeating: false, count: members.count)
    for (position, member) in members.enumerated() {
      if member.future.isComplete {
        if member.future.hasFailed { failed = true }
        continue
      }
      pending += 1
      member.future.whenComplete { [self] ok in
        pending -= 1
        if !ok && !cancelledByGather[position] { failed = true }
        onChange?()
      }
    }
  }

  /// The first phase is over: every member is done, or one failed.
  var isSettled: Bool { pending == 0 || failed }

  /// Cancels the members still running (a failure, an interruption);
  /// returns their positions.
  @discardableResult
  func cancelTheRest() -> [Int] {
    var cancelled: [Int] = []
    for (position, member) in members.enumerated() where !member.future.isComplete {
      cancelledByGather[position] = true
      member.work.cancel()
      cancelled.append(position)
    }
    return cancelled
  }

  /// Once every member is done: throws the first failure by position (a
  /// member that failed only because gather cancelled it does not count),
  /// else the interruption, if any. Every error is taken, so none is
  /// reported as never retrieved.
  func collect() throws {
    var failure: (any Error)?
    for (position, member) in members.enumerated() {
      if let error = member.future.takeError(), failure == nil, !cancelledByGather[position] {
        failure = error
      }
    }
    if let failure { throw failure }
    if let interruption { throw interruption }
  }
}
