internal import Glibc

/// C records (a `cloop_timer`, a `cloop_op`, a `cloop_waiter`, a lock's
/// state, ...) in heap memory that never moves, owned by one Swift value
/// and freed with it.
///
/// The C core links such records into its lists and keeps their address,
/// so they cannot live in a Swift property that may move, and nothing may
/// free them while C still holds them. `~Copyable`: a copy would be a
/// second owner of the same memory. Whoever holds one makes sure C is done
/// with it when it goes away (a wait is kept alive until its callback has
/// run; a primitive checks that nobody waits on it).
struct Pinned<Record>: ~Copyable {
  /// The first record; `count` of them follow each other from here.
  let pointer: UnsafeMutablePointer<Record>
  let count: Int

  /// `count` copies of `record` (a zeroed C struct, usually: initialize
  /// it in place with its `cloop_*_init` once its address is known).
  init(_ record: Record, count: Int = 1) {
    pointer = mallocPointer(to: Record.self, count: count)
    pointer.initialize(repeating: record, count: count)
    self.count = count
  }

  deinit {
    pointer.deinitialize(count: count)
    free(pointer)
  }
}

/// Uninitialized memory for `count` values of `type`, from `malloc` (or
/// `posix_memalign` for an alignment above malloc's 16 bytes); give it
/// back with `free`.
///
/// Why not `UnsafeMutablePointer.allocate`: for an alignment malloc already
/// gives, it asks the runtime for "default" alignment, which the runtime
/// serves with `posix_memalign` -- about 110 instructions against malloc's
/// 40 (callgrind), paid by every wait and future round that needs a record.
/// Not inlined: a caller that zeroes the memory next would have the
/// compiler fold malloc and the zeroing into `calloc`, which skips malloc's
/// per-thread cache (140 instructions more a round, callgrind).
@inline(never)
func mallocPointer<T>(to type: T.Type, count: Int = 1) -> UnsafeMutablePointer<T> {
  let size = max(1, MemoryLayout<T>.stride * count)
  var raw: UnsafeMutableRawPointer?
  if MemoryLayout<T>.alignment <= 16 {
    raw = malloc(size)
  } else if posix_memalign(&raw, MemoryLayout<T>.alignment, size) != 0 {
    raw = nil
  }
  guard let raw else { misuse("out of memory: \(size) bytes for \(T.self)") }
  return raw.bindMemory(to: T.self, capacity: count)
}
