/// One datagram received by a ``UDPSocket``: its bytes, who sent it, and
/// whether it was longer than the receive asked for.
///
/// A datagram longer than `max` is not thrown away and not cut silently:
/// its first `max` bytes come with ``truncated`` set (the kernel dropped
/// the rest, `MSG_TRUNC`). Check it where a cut datagram would be
/// misread — or receive with `max: 65536`, which no datagram exceeds.
///
/// ```swift
/// let datagram = try await socket.receive(max: 512)
/// if datagram.truncated { print("\(datagram.sender) sent more than 512 bytes") }
/// try await socket.send(datagram.bytes, to: datagram.sender)
/// ```
public struct Datagram: Hashable, Sendable {
  /// The bytes kept: all of the datagram, or its first `max` when
  /// ``truncated``.
  public var bytes: [UInt8]
  /// The sender's address.
  public var sender: SocketAddress
  /// `true` when the datagram was longer than `max` and its tail is gone.
  public var truncated: Bool

  /// A datagram as received (for tests and for code that builds replies).
  public init(bytes: [UInt8], sender: SocketAddress, truncated: Bool = false) {
    self.bytes = bytes
    self.sender = sender
    self.truncated = truncated
  }
}
