internal import CLoop

@usableFromInline
final class FiberState<Value>: FiberNode, @unchecked Sendable {
  let future: Future<Value>
  private var body: (() throws -> Value)?

  /// `future` comes from the caller (`spawnFiber`, inlined into the
  /// caller's module): made here, in code generic over `Value` that the
  /// caller reaches unspecialized, `Future<Value>` would be one more
  /// runtime metadata lookup per spawn.
  @usableFromInline
  init(future: Future<Value>, name: String?, number: Int, body: @escaping () throws -> Value) {
    self.future = future
    self.body = body
    super.init(loop: future.loop, name: name, number: number)
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
