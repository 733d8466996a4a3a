internal import Glibc

/// What a send in flight sends from: a copy of (a chunk of) the caller's
/// bytes in heap memory the connection owns, so nothing points into a
/// Swift value while the task is parked (io_uring reads it from the kernel
/// meanwhile). Costs one memcpy per write that does not go out at once.
/// `~Copyable`: it is that memory's one owner and frees it when it goes
/// (with its connection).
struct SendBuffer: ~Copyable {
  private var base: UnsafeMutableRawPointer?
  private var capacity = 0

  init() {}

  deinit {
    free(base)
  }

  /// Room for `count` bytes, at least 4 KiB: the buffer, grown if it was
  /// smaller (its old contents are dropped). Only while no send is in
  /// flight from it.
  mutating func reserve(_ count: Int) -> UnsafeMutableRawPointer {
    if capacity < count {
      let newCapacity = Swift.max(count, 4096)
      free(base)
      base = malloc(newCapacity)
      ensure(base != nil, "out of memory for a \(newCapacity)-byte send buffer")
      capacity = newCapacity
    }
    return base!
  }
}
