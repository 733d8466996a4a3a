/// gather's waits in a task, over a ``GatherCore``: phase one parks in a
/// ``GatherWait`` (interruptible: cancellation, timeouts), phase two on a
/// plain continuation that nothing but the members' completions resumes.
final class GatherState {
  let loop: EventLoop
  private let core: GatherCore
  private var phaseOne: GatherWait?
  private var allDone: UnsafeContinuation<Void, Never>?

  init(loop: EventLoop, _ members: [GatherCore.Member]) {
    self.loop = loop
    core = GatherCore(members)
  }

  /// Waits until every member is done (cancelling the rest after a
  /// failure or an interruption), then throws as ``GatherCore/collect()``
  /// does.
  nonisolated(nonsending) func run() async throws {
    core.onChange = { [self] in
      if core.isSettled { phaseOne?.finish(.success(())) }
      if core.pending == 0 { allDone.take()?.resume() }
    }
    defer { core.onChange = nil }  // (the cycle through the closure ends)
    if !core.isSettled {
      let wait = GatherWait(loop: loop)
      phaseOne = wait
      let result = await wait.wait()
      phaseOne = nil
      if case .failure(let error) = result { core.interruption = error }
    }
    if core.pending > 0 {
      // A failure or an interruption: cancel the rest, and wait for them
      // without being interruptible (no task may be left running).
      core.cancelTheRest()
      await withUnsafeContinuation { continuation in
        if core.pending == 0 { continuation.resume() } else { allDone = continuation }
      }
    }
    try core.collect()
  }
}

/// gather's first wait: until all are done or one fails.
final class GatherWait: LoopWait<Void, TinyAsyncError>, @unchecked Sendable {}
