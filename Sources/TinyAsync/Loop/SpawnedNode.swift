/// Spawned work -- a task of the async front (``SpawnedTask``) or a fiber
/// (`FiberNode`) -- on the loop's list of live work until it ends, so that
/// ``EventLoop/runUntilComplete(_:)`` and ``EventLoop/runFiberUntilComplete(_:)`` can
/// cancel and finish what their main work left running.
///
/// A class, not a protocol: the list is intrusive (these two links are the
/// node), and a protocol cannot hold stored properties. Each kind overrides
/// ``cancel()``, its one difference here.
///
/// `@unchecked Sendable`: the Swift task's closure captures it; all
/// of it is touched on the loop's thread, except a Swift task's
/// `cancel()`, which is thread-safe.
///
/// `@usableFromInline`, as its subclasses: the spawn functions are
/// `@inlinable` so that the caller's module makes their generic objects
/// (see `EventLoop.spawnFiber`).
@usableFromInline
class SpawnedNode: @unchecked Sendable {
  @exclusivity(unchecked) var next: SpawnedNode?
  @exclusivity(unchecked) unowned(unsafe) var prev: SpawnedNode?

  @usableFromInline init() {}

  /// Requests cancellation of the work.
  func cancel() {}
}
