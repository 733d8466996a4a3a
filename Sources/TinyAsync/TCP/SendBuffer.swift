internal import Glibc

/// What a send in flight sends from: a copy of (a chunk of) the caller's
/// bytes in memory the connection owns, so nothing points into a Swift
/// value while the task is parked (io_uring reads it from the kernel
/// meanwhile). Costs one memcpy per write that does not go out at once.
/// Memory from the loop's ``BufferPool``, taken only when a write must
/// wait. `~Copyable`: it is that memory's one owner and gives it back when
/// it goes (with its connection).
struct SendBuffer: ~Copyable {
  private let pool: BufferPool
  private var base: UnsafeMutableRawPointer?
  private var capacity = 0

  init(pool: BufferPool) {
    self.pool = pool
  }

  deinit {
    if let base { pool.give(base, capacity: capacity) }
  }

  /// Room for `count` bytes: the buffer, exchanged for a larger one if it
  /// was smaller (its old contents are dropped). Only while no send is in
  /// flight from it.
  mutating func reserve(_ count: Int) -> UnsafeMutableRawPointer {
    if capacity < count {
      if let base { pool.give(base, capacity: capacity) }
      (base, capacity) = pool.take(atLeast: count)
    }
    return base!
  }
}
