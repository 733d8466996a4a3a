internal import Glibc

/// A loop's cache of I/O buffers: the read-ahead and send buffers of its
/// connections come from here and go back here, so a server that churns
/// connections reuses the same few buffers instead of asking `malloc` for
/// fresh ones each time.
///
/// Why not `malloc`: a connection's buffers are tens to hundreds of KiB,
/// above glibc's mmap threshold at first, which then moves up to the
/// largest size freed; from there on they are carved from the heap among
/// the small objects (tasks, waits, connections) that live beside them.
/// After a burst of connections the heap is mostly free but cannot shrink
/// past the small objects still live near its top, and the pages the
/// buffers touched stay resident: RSS climbed by tens of MiB per burst of
/// 9,000 connections (issue 19) while `malloc` held about 1 MiB in use.
/// Here every buffer is its own anonymous mapping: what is not kept is
/// unmapped, and RSS follows the live connections.
///
/// Sizes come in five classes, 16 KiB × 2^k up to 256 KiB (a connection's
/// largest recv or send chunk); a free buffer goes back to its class's list
/// while the pool keeps at most ``limit`` bytes, and is unmapped beyond
/// that. Larger buffers (a `read(until:max:)` with a large `max`) are
/// mapped and unmapped each time, never kept. Cost: one `mmap` and one
/// `munmap` (a few µs with the page faults) only when the pool is empty or
/// full; a buffer taken from the pool is an array pop.
///
/// Loop-confined: the connections of one loop take and give on its thread.
/// A buffer given back from any other thread, or after the loop was shut
/// down, is unmapped at once and the lists are not touched.
final class BufferPool {
  /// The smallest class; a connection's first read buffer.
  static let smallest = 16 * 1024
  /// Classes: `smallest << 0 ... smallest << (classCount - 1)` (256 KiB).
  static let classCount = 5
  static let largest = smallest << (classCount - 1)
  /// What a pool keeps unless told otherwise: the buffers of a few hundred
  /// small-message connections, or sixteen streaming ones.
  static let defaultLimit = 4 << 20

  /// The most bytes of free buffers kept for reuse; a buffer given back
  /// beyond it is unmapped. Lowering it unmaps the excess at once.
  var limit: Int {
    didSet { trim(to: limit) }
  }

  /// Bytes of free buffers kept now.
  private(set) var keptBytes = 0
  /// Buffers handed out and not yet given back (for the tests).
  private(set) var outstanding = 0
  /// Buffers mapped so far (for the tests: reuse keeps it flat).
  private(set) var mapped = 0

  private var free: [[UnsafeMutableRawPointer]]
  private let owner = pthread_self()
  private var closed = false

  init(limit: Int = BufferPool.defaultLimit) {
    self.limit = limit
    free = Array(repeating: [], count: Self.classCount)
  }

  deinit {
    // The last reference: no other thread can be in here.
    for k in 0..<Self.classCount {
      for base in free[k] { munmap(base, Self.smallest << k) }
    }
  }

  /// The capacity a request for `bytes` gets: its class, or whole pages
  /// above the largest class.
  static func capacity(for bytes: Int) -> Int {
    if bytes <= smallest { return smallest }
    if bytes <= largest {
      var size = smallest
      while size < bytes { size <<= 1 }
      return size
    }
    let page = 4096
    return (bytes + page - 1) / page * page
  }

  /// A buffer of at least `bytes` (more than 0): its base and its capacity.
  func take(atLeast bytes: Int) -> (base: UnsafeMutableRawPointer, capacity: Int) {
    let capacity = Self.capacity(for: bytes)
    outstanding += 1
    if let k = Self.classIndex(capacity), !closed, isOwner, let base = free[k].popLast() {
      keptBytes -= capacity
      return (base, capacity)
    }
    mapped += 1
    let base = mmap(nil, capacity, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
    ensure(base != MAP_FAILED, "out of memory mapping a \(capacity)-byte I/O buffer (errno \(errno))")
    return (base!, capacity)
  }

  /// Gives back a buffer from ``take(atLeast:)`` with the capacity it came
  /// with.
  func give(_ base: UnsafeMutableRawPointer, capacity: Int) {
    if isOwner { outstanding -= 1 }
    if let k = Self.classIndex(capacity), !closed, isOwner, keptBytes + capacity <= limit {
      free[k].append(base)
      keptBytes += capacity
      return
    }
    munmap(base, capacity)
  }

  /// Unmaps kept buffers, largest first, until at most `bytes` are kept.
  func trim(to bytes: Int) {
    var k = Self.classCount - 1
    while keptBytes > Swift.max(bytes, 0) && k >= 0 {
      if let base = free[k].popLast() {
        let capacity = Self.smallest << k
        munmap(base, capacity)
        keptBytes -= capacity
      } else {
        k -= 1
      }
    }
  }

  /// Unmaps every kept buffer; buffers given back later are unmapped at
  /// once. On the loop's thread, when the loop shuts down.
  func close() {
    guard isOwner, !closed else { return }
    trim(to: 0)
    closed = true
  }

  private var isOwner: Bool { pthread_equal(owner, pthread_self()) != 0 }

  private static func classIndex(_ capacity: Int) -> Int? {
    guard capacity <= largest else { return nil }
    return (capacity / smallest).trailingZeroBitCount
  }
}
