/// What the module's non-generic code needs of a ``Future``, whatever its
/// `Value`: a ``FutureWait`` parks and unparks itself, and gather (both
/// fronts, `GatherCore`) watches completions and reads errors. Generic
/// code there would cost a runtime metadata lookup per use when called
/// unspecialized from another module (see `Future.state`); a class-bound
/// existential costs a witness-table call.
protocol AnyFuture: AnyObject {
  /// `true` once completed.
  var isComplete: Bool { get }
  /// `true` once completed with an error or a cancellation.
  var hasFailed: Bool { get }
  /// Runs `observer(succeeded)` on completion (at once if complete).
  func whenComplete(_ observer: @escaping (Bool) -> Void)
  /// The error, marked retrieved, if it failed; nil otherwise.
  func takeError() -> (any Error)?
  /// Parks a task's wait until completion (see ``FutureWait``).
  func addWaiter(_ wait: FutureWait)
  func removeWaiter(_ wait: FutureWait)
}

extension Future: AnyFuture {}
