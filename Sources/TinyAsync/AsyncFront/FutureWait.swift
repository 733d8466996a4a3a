/// A task waiting for a future to complete: it finishes with success once
/// the future has an outcome (which the task then reads from the future),
/// or fails when the wait is interrupted.
final class FutureWait: LoopWait<Void, any Error>, @unchecked Sendable {
  unowned(unsafe) let future: any AnyFuture

  init(future: any AnyFuture, loop: EventLoop) {
    self.future = future
    super.init(loop: loop)
  }

  /// (`future` is alive: the waiting task holds it.)
  override func start() {
    future.addWaiter(self)
  }

  override func stop() {
    future.removeWaiter(self)
  }
}
