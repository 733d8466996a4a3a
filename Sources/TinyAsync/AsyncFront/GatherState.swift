/// gather's bookkeeping: which tasks are done, and the one continuation.
final class GatherState {
  let loop: EventLoop
  private var pending = 0
  private var count = 0
  private var nodes: [SpawnedNode] = []
  private var cancelledByGather: [Bool] = []
  private var done: [Bool] = []
  private var failed = false
  /// Why gather stopped waiting early (cancelled, timed out), if it did.
  private(set) var interruption: TinyAsyncError?
  private var phaseOne: GatherWait?
  private var allDone: UnsafeContinuation<Void, Never>?

  init(loop: EventLoop) {
    self.loop = loop
  }

  func watch<V>(_ future: Future<V>, cancel node: SpawnedNode) {
    let position = count
    count += 1
    nodes.append(node)
    cancelledByGather.append(false)
    done.append(false)
    if future.isDone {
      done[position] = true
      if future.hasFailed { failed = true }
      return
    }
    pending += 1
    future.whenComplete { [self] ok in
      done[position] = true
      pending -= 1
      if !ok && !failed && !cancelledByGather[position] {
        failed = true
        phaseOne?.finish(.success(()))
      }
      if pending == 0 {
        phaseOne?.finish(.success(()))
        allDone.take()?.resume()
      }
    }
  }

  func wasCancelledByGather(_ position: Int) -> Bool {
    cancelledByGather[position]
  }

  nonisolated(nonsending) func run() async throws {
    if pending > 0 && !failed {
      let wait = GatherWait(loop: loop)
      phaseOne = wait
      let result = await wait.wait()
      phaseOne = nil
      if case .failure(let error) = result { interruption = error }
    }
    guard pending > 0 else { return }
    // A failure or an interruption: cancel the rest, and wait for them
    // without being interruptible (no task may be left running).
    for (position, node) in nodes.enumerated() where !done[position] {
      cancelledByGather[position] = true
      node.cancel()
    }
    await withUnsafeContinuation { allDone = $0 }
  }
}

/// gather's first wait: until all are done or one fails.
final class GatherWait: LoopWait<Void, TinyAsyncError>, @unchecked Sendable {}
