internal import Glibc

/// A connection's read-ahead bytes: `start ..< end` arrived and were not
/// handed out yet; `end ..< capacity` (the tail) is where the next recv
/// writes. Memory from the loop's ``BufferPool``, so a recv in flight
/// (io_uring writes from the kernel while the task is parked) never points
/// into a Swift array that could move, and a closed connection's buffer
/// serves the next one. `~Copyable`: it is that memory's one owner and
/// gives it back when it goes (with its connection).
///
/// The room a recv gets adapts, as NIO's and libuv's read allocators do:
/// 16 KiB at first, doubled each time a recv fills all the room it had, up
/// to what the read asked for (at most 256 KiB). A connection of small
/// messages costs 16 KiB; a streaming one reaches full-size reads after
/// five recvs.
///
/// Its contents move or grow only while no recv is in flight (a
/// connection reads from one task at a time).
struct ReadBuffer: ~Copyable {
  private let pool: BufferPool
  private var base: UnsafeMutableRawPointer?
  private var capacity = 0
  private var start = 0
  private var end = 0
  /// The most room ``reserveTail(_:)`` makes for the next recv; doubles
  /// when a recv fills the whole tail.
  private var roomLimit = BufferPool.smallest

  /// What a first read allocates: enough for a typical message, small
  /// enough that 10,000 idle connections cost little.
  static let initialCapacity = BufferPool.smallest

  init(pool: BufferPool) {
    self.pool = pool
  }

  deinit {
    if let base { pool.give(base, capacity: capacity) }
  }

  /// The bytes buffered and not handed out yet.
  var count: Int { end - start }

  /// Where the next recv writes and how much room it has there; call
  /// ``reserveTail(_:)`` first.
  var tail: (bytes: UnsafeMutableRawPointer, room: Int) {
    (base! + end, capacity - end)
  }

  /// Counts `n` bytes that a recv wrote into the tail.
  mutating func received(_ n: Int) {
    // A full tail: more was waiting, so the next recv may take more.
    if n == capacity - end && roomLimit < BufferPool.largest { roomLimit <<= 1 }
    end += n
  }

  /// Makes room for a recv of up to `wanted` bytes after the buffered
  /// ones, as much as the adaptive limit allows (at least 1 byte): moves
  /// them to the front, or moves them to a larger buffer from the pool.
  /// Callers cap `wanted`.
  mutating func reserveTail(_ wanted: Int) {
    if count == 0 { start = 0; end = 0 }
    let want = Swift.max(Swift.min(wanted, roomLimit), 1)
    if capacity - end >= want { return }
    if start > 0 {
      if count > 0 { memmove(base!, base! + start, count) }
      end = count
      start = 0
      if capacity - end >= want { return }
    }
    let (grown, newCapacity) = pool.take(atLeast: end + want)
    if let base {
      if end > 0 { memcpy(grown, base, end) }
      pool.give(base, capacity: capacity)
    }
    base = grown
    capacity = newCapacity
  }

  /// Hands out the first `n` buffered bytes.
  mutating func take(_ n: Int) -> [UInt8] {
    ensure(n <= count, "internal error: taking \(n) bytes from a read buffer holding \(count)")
    if n == 0 { return [] }
    let bytes = [UInt8](UnsafeRawBufferPointer(start: base! + start, count: n))
    start += n
    return bytes
  }

  /// Appends the first `n` buffered bytes to `array` and drops them.
  mutating func take(_ n: Int, appendingTo array: inout [UInt8]) {
    ensure(n <= count, "internal error: taking \(n) bytes from a read buffer holding \(count)")
    if n == 0 { return }
    array.append(contentsOf: UnsafeRawBufferPointer(start: base! + start, count: n))
    start += n
  }

  /// The offset (from `start`) of the first `delimiter` that ends within
  /// the first `limit` buffered bytes, searching from offset `from`.
  func firstIndex(of delimiter: [UInt8], from: Int, limit: Int) -> Int? {
    let n = Swift.min(count, limit)
    let d = delimiter.count
    guard d > 0, n >= d, from <= n - d else { return nil }
    let bytes = UnsafeRawPointer(base!) + start
    let first = Int32(delimiter[0])
    return delimiter.withUnsafeBytes { delim -> Int? in
      var i = from
      while i <= n - d {
        guard let hit = memchr(bytes + i, first, n - d + 1 - i) else { return nil }
        let at = UnsafeRawPointer(hit) - bytes
        if d == 1 || memcmp(bytes + at + 1, delim.baseAddress! + 1, d - 1) == 0 { return at }
        i = at + 1
      }
      return nil
    }
  }
}
