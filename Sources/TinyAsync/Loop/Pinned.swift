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
    pointer = .allocate(capacity: count)
    pointer.initialize(repeating: record, count: count)
    self.count = count
  }

  deinit {
    pointer.deinitialize(count: count)
    pointer.deallocate()
  }
}
