internal import Glibc

/// A connection's read-ahead bytes: `start ..< end` arrived and were not
/// handed out yet; `end ..< capacity` (the tail) is where the next recv
/// writes. Heap memory the connection owns, so a recv in flight (io_uring
/// writes from the kernel while the task is parked) never points into a
/// Swift array that could move. `~Copyable`: it is that memory's one owner
/// and frees it when it goes (with its connection).
///
/// Its contents move or grow only while no recv is in flight (a
/// connection reads from one task at a time).
struct ReadBuffer: ~Copyable {
  private var base: UnsafeMutableRawPointer?
  private var capacity = 0
  private var start = 0
  private var end = 0

  /// What a first read allocates: enough for a typical message, small
  /// enough that 10,000 idle connections cost little (untouched pages of
  /// a larger request are not resident anyway).
  static let initialCapacity = 16 * 1024

  init() {}

  deinit {
    free(base)
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
    end += n
  }

  /// Makes room for a recv of at least `wanted` bytes after the buffered
  /// ones: moves them to the front, or grows the buffer to just what is
  /// needed (at least the initial capacity; callers cap `wanted`).
  mutating func reserveTail(_ wanted: Int) {
    if count == 0 { start = 0; end = 0 }
    let want = Swift.max(wanted, 1)
    if capacity - end >= want { return }
    if start > 0 {
      if count > 0 { memmove(base!, base! + start, count) }
      end = count
      start = 0
      if capacity - end >= want { return }
    }
    let newCapacity = Swift.max(Self.initialCapacity, end + want)
    let grown = realloc(base, newCapacity)
    ensure(grown != nil, "out of memory growing a read buffer to \(newCapacity) bytes")
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
