/// One cancellation error: everything this module throws for a cancellation
/// is ``TinyAsyncError/cancelled``, including a Swift `CancellationError`
/// that a body threw (`try Task.checkCancellation()`): the task's value,
/// ``withTimeout(_:isolation:_:)``, ``withShield(timeout:isolation:_:)``,
/// `gather`, ``EventLoop/run(backend:_:)`` and the fibers' results turn it
/// into `.cancelled` on the way out, so that one
/// `catch TinyAsyncError.cancelled` catches every cancellation path.
///
/// Why not `CancellationError`, which Swift code catches? The waits of this
/// module throw typed (`throws(TinyAsyncError)`), so the cancellation must
/// be one of its cases; and Swift matches `catch TinyAsyncError.cancelled`
/// by a cast and a case match, never through a user `~=`, so the two
/// cannot be made one pattern. Code that must also catch errors from other
/// libraries can test ``Swift/Error/isCancellation``.
///
/// Typed throws: the waits themselves (sleep, socket calls, the sync
/// primitives, a watcher) are `throws(TinyAsyncError)`. What runs a body of
/// the caller's -- `withTimeout`, `withShield`, `run`, a task's or fiber's
/// value, `gather` of their values -- stays `throws`: the body may throw any
/// error, the call adds its own (`.timedOut`, `.cancelled`), and Swift has
/// no union of error types, so a typed form would have to forbid bodies
/// any error but ours.
///
/// ```swift
/// let worker = loop.spawn { () async throws -> Int in
///     try Task.checkCancellation()  // throws CancellationError
///     return 1
/// }
/// worker.cancel()
/// do { _ = try await worker.value } catch TinyAsyncError.cancelled { print("cancelled") }
/// ```
extension TinyAsyncError {
  /// `Task.checkCancellation()` with this module's error: throws
  /// ``cancelled`` if the current task is cancelled (and not shielded: see
  /// ``withShield(timeout:isolation:_:)``).
  public static func checkCancellation() throws(TinyAsyncError) {
    if Task.isCancelled && !(TimeoutScope.current?.isShielded ?? false) { throw .cancelled }
  }

  /// `error` with a Swift `CancellationError` turned into ``cancelled``.
  static func unified(_ error: any Error) -> any Error {
    error is CancellationError ? TinyAsyncError.cancelled : error
  }
}

extension Error {
  /// `true` for a cancellation, whoever threw it: ``TinyAsyncError/cancelled``
  /// or Swift's `CancellationError`.
  ///
  /// ```swift
  /// do { try await work() } catch where error.isCancellation { print("cancelled") }
  /// ```
  public var isCancellation: Bool {
    (self as? TinyAsyncError) == .cancelled || self is CancellationError
  }
}
