/// The part of a read that does not wait, which the async and the fiber
/// form of each ``TCPConnection`` read share: they differ only in how they
/// receive (a ``SocketWait`` or `cloop_sock_recv`). Each form asks
/// ``wanted(_:)`` how many bytes to receive, receives them and reports the
/// count with ``received(_:)``, until the buffered bytes answer the read;
/// then it takes ``length`` bytes from the buffer:
///
///     while let wanted = try read.wanted(readBuffer) {
///       read.received(try await fill(wanted: wanted))
///     }
///     return readBuffer.take(read.length)
struct BufferedRead {
  enum Goal {
    /// Whatever has arrived, up to `max` bytes (`read(max:)`).
    case available
    /// Up to and including the first `delimiter`, within `max` bytes
    /// (`read(until:max:)`).
    case through([UInt8])
  }

  let goal: Goal
  /// The most bytes the read returns (a delimiter included).
  let max: Int
  /// Bytes of the buffer already searched for the delimiter in vain.
  private var searched = 0
  /// A receive came back with 0: end of stream.
  private var atEnd = false
  /// Once ``wanted(_:)`` returned nil: the bytes the read takes.
  private(set) var length = 0

  init(_ goal: Goal, max: Int) {
    self.goal = goal
    self.max = max
  }

  /// How many bytes to receive before `buffer` can answer the read, or nil
  /// once it can (then ``length`` says how many bytes to take). At end of
  /// stream the read takes what is buffered: nothing for `read(max:)`,
  /// the bytes before a missing delimiter for `read(until:max:)`.
  ///
  /// - Throws: ``TinyAsyncError/delimiterNotFound`` when `max` buffered
  ///   bytes hold no delimiter (they stay buffered).
  mutating func wanted(_ buffer: borrowing ReadBuffer) throws(TinyAsyncError) -> Int? {
    switch goal {
    case .available:
      if buffer.count == 0 && !atEnd { return max }
      length = Swift.min(max, buffer.count)
      return nil
    case .through(let delimiter):
      if atEnd {
        length = buffer.count
        return nil
      }
      // Bytes already searched are not searched again, but for the last
      // ones, where a delimiter of several bytes may begin.
      let from = Swift.max(0, searched - (delimiter.count - 1))
      if let at = buffer.firstIndex(of: delimiter, from: from, limit: max) {
        length = at + delimiter.count
        return nil
      }
      if buffer.count >= max { throw .delimiterNotFound }
      searched = buffer.count
      // The buffer grows with what arrives, not to `max` at once.
      return Swift.min(max - buffer.count, Swift.max(buffer.count, ReadBuffer.initialCapacity))
    }
  }

  /// A receive asked for by ``wanted(_:)`` came back with `n` bytes, now
  /// in the buffer (0: end of stream).
  mutating func received(_ n: Int) {
    if n == 0 { atEnd = true }
  }
}
