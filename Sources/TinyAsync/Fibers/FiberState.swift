internal import CLoop

final class FiberState<Value>: FiberNode, @unchecked Sendable {
  let future: Future<Value>
  private var body: (() throws -> Value)?

  @inline(__always)  // into spawnFiber (otherwise a call more per spawn)
  init(loop: EventLoop, name: String?, number: Int, body: @escaping () throws -> Value) {
    future = Future(on: loop)
    self.body = body
    super.init(loop: loop, name: name, number: number)
  }

  deinit {
    future.reportUnretrieved(owner: "fiber '\(name)' (FiberHandle<\(Value.self)>)")
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
      future.fail(TinyAsyncError.unified(error))
    }
  }

  /// The body is over: off the loop's list of live work, before the
  /// future's observers and waiters run.
  private func finish() {
    finished = true
    loop.unlinkSpawned(self)
    cloop_unref(loop.cLoop)
  }
}
