internal import CLoop
internal import Glibc

/// A UDP socket on an ``EventLoop``: bind it, then send datagrams to any
/// address and receive them with their sender's; or ``connect(to:)`` it to
/// one peer and use ``send(_:)-4wonk`` and ``receive(max:)-8xewp`` alone.
///
/// Each wait goes through the loop's datagram operations
/// (`cloop_op_recvmsg` / `cloop_op_sendmsg`: io_uring's own requests, or
/// epoll readiness and a retry), so it parks only the calling task, throws
/// ``TinyAsyncError/cancelled`` when that task is cancelled and
/// ``TinyAsyncError/timedOut`` in an expired ``withTimeout(_:_:)``. A
/// datagram that arrived before the interruption took effect is kept for
/// the next receive: none is lost. A datagram longer than the receive's
/// `max` comes with ``Datagram/truncated`` set, never cut silently.
///
/// One task receives and one task sends at a time (two at once stop the
/// program with a message); one of each concurrently is fine. The socket
/// is also an `AsyncSequence` of datagrams, which ends when it is closed.
/// Loop-confined (not `Sendable`); closes its socket when it goes away.
///
/// ```swift
/// try EventLoop.run {
///     let server = try UDPSocket(host: "127.0.0.1", port: 0)
///     let client = try UDPSocket(host: "127.0.0.1", port: 0)
///     try await client.send(Array("ping".utf8), to: try server.localAddress)
///     let datagram = try await server.receive(max: 1500)
///     try await server.send(datagram.bytes, to: datagram.sender)   // echo
///     print(try await client.receive(max: 1500).bytes.count)      // 4
/// }
/// ```
public final class UDPSocket {
  /// The loop the socket belongs to.
  public let loop: EventLoop
  /// The socket, or -1 once closed.
  private(set) var fd: Int32
  private let receiveRecord = Pinned(cloop_op())
  private let sendRecord = Pinned(cloop_op())
  var receiveOp: UnsafeMutablePointer<cloop_op> { receiveRecord.pointer }
  var sendOp: UnsafeMutablePointer<cloop_op> { sendRecord.pointer }
  /// Where datagrams arrive (malloc'd, grown to the largest `max` asked;
  /// the kernel writes here while a receive waits).
  private(set) var receiveBuffer: UnsafeMutableRawPointer
  private var receiveCapacity: Int
  private var sendStorage: SendBuffer
  /// The send buffer's memory, as the last ``beginSend(_:to:_:)`` left it.
  private(set) var sendBuffer: UnsafeMutableRawPointer?
  /// A datagram whose receive was interrupted after it had arrived.
  var kept: Datagram?
  /// What the last receive's callback built, for the receive to return.
  var justReceived: Datagram?
  var isReceiving = false
  var isSending = false
  /// The last sender seen, raw and parsed: a peer that sends again (the
  /// common case) costs a compare, not an inet_ntop and a String.
  private var lastSender: (storage: sockaddr_storage, length: socklen_t, address: SocketAddress)?
  /// The last address sent to, and its kernel form.
  private var lastTarget: (address: SocketAddress, storage: sockaddr_storage, length: socklen_t)?
  private var connectedPeer: SocketAddress?

  /// Binds a UDP socket to `address` (port 0: a free one; read it with
  /// ``port`` or ``localAddress``).
  ///
  /// - Parameters:
  ///   - address: A local IPv4 or IPv6 address (`0.0.0.0` / `::` for
  ///     every interface; an IPv6 socket is IPv6-only).
  ///   - reuseAddress: `SO_REUSEADDR`.
  ///   - reusePort: `SO_REUSEPORT`: several sockets share the port, the
  ///     kernel spreading datagrams over them.
  ///   - loop: The loop to serve on; by default the one running here.
  /// - Throws: ``TinyAsyncError/addressInUse``; `EADDRNOTAVAIL` for an
  ///   address this host does not have (`::1` without IPv6);
  ///   `EAFNOSUPPORT` for a Unix address.
  public init(
    bind address: SocketAddress, reuseAddress: Bool = false, reusePort: Bool = false,
    on loop: EventLoop? = nil
  ) throws(TinyAsyncError) {
    let loop = loop ?? EventLoop.running(for: "UDPSocket(bind:)")
    loop.checkThread("UDPSocket(bind:)")
    var (storage, length) = try address.storage()
    let flags = (reuseAddress ? Int32(CLOOP_UDP_REUSEADDR) : 0) | (reusePort ? Int32(CLOOP_UDP_REUSEPORT) : 0)
    let fd = withUnsafePointer(to: &storage) {
      $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { cloop_udp_open($0, length, flags) }
    }
    if fd < 0 { throw TinyAsyncError(code: fd, context: "bind UDP to \(address)") }
    self.loop = loop
    sendStorage = SendBuffer(pool: loop.bufferPool)
    self.fd = fd
    receiveCapacity = 2048
    receiveBuffer = malloc(receiveCapacity)!
  }

  /// Binds to a numeric `host` and `port`: ``init(bind:reuseAddress:reusePort:on:)``
  /// on ``SocketAddress/init(host:port:)``.
  public convenience init(
    host: String = "127.0.0.1", port: Int = 0, reuseAddress: Bool = false, reusePort: Bool = false,
    on loop: EventLoop? = nil
  ) throws(TinyAsyncError) {
    try self.init(
      bind: SocketAddress(host: host, port: port), reuseAddress: reuseAddress, reusePort: reusePort, on: loop)
  }

  deinit {
    // No operation is in flight here: each wait holds the socket until its
    // callback has run.
    if fd >= 0 { _ = cloop_close_fd(loop.cLoop, fd) }
    free(receiveBuffer)
  }

  // MARK: Addresses

  /// The local port.
  /// - Throws: ``TinyAsyncError/closed`` after ``close()``.
  public var port: Int {
    get throws(TinyAsyncError) {
      try localAddress.port ?? 0
    }
  }

  /// The address the socket is bound to.
  /// - Throws: ``TinyAsyncError/closed`` after ``close()``.
  public var localAddress: SocketAddress {
    get throws(TinyAsyncError) {
      loop.checkThread("UDPSocket.localAddress")
      guard fd >= 0 else { throw .closed }
      var storage = sockaddr_storage()
      var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
      let rc = withUnsafeMutablePointer(to: &storage) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
      }
      if rc < 0 { throw TinyAsyncError(code: -errno) }
      guard let address = SocketAddress(storage, length: length) else { throw TinyAsyncError(code: -EAFNOSUPPORT) }
      return address
    }
  }

  /// The peer of ``connect(to:)``, or `nil` while not connected.
  public var remoteAddress: SocketAddress? {
    loop.checkThread("UDPSocket.remoteAddress")
    return connectedPeer
  }

  /// Fixes the socket's peer (no handshake, so no wait): ``send(_:)-4wonk`` goes
  /// there, only its datagrams are received, and an ICMP "port
  /// unreachable" from it comes back as ``TinyAsyncError/connectionRefused``
  /// from the next receive or send (once).
  public func connect(to peer: SocketAddress) throws(TinyAsyncError) {
    loop.checkThread("UDPSocket.connect(to:)")
    guard fd >= 0 else { throw .closed }
    var (storage, length) = try peer.storage()
    let rc = withUnsafePointer(to: &storage) {
      $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { cloop_udp_connect(fd, $0, length) }
    }
    if rc < 0 { throw TinyAsyncError(code: rc, context: "connect UDP to \(peer)") }
    connectedPeer = peer
  }

  // MARK: Receiving

  /// Waits for the next datagram and returns it with its sender: all of
  /// it, or, for one longer than `max`, its first `max` bytes with
  /// ``Datagram/truncated`` set (the rest is gone; the next receive gets
  /// the next datagram).
  ///
  /// - Parameter max: The most bytes to keep, 0-65536 (65,507 is the
  ///   largest IPv4 datagram).
  /// - Throws: ``TinyAsyncError/connectionRefused`` (a connected socket's
  ///   peer refused an earlier datagram), ``TinyAsyncError/closed``,
  ///   ``TinyAsyncError/cancelled``, ``TinyAsyncError/timedOut`` (no
  ///   datagram is lost to the last two).
  public func receive(max: Int = 65536) async throws(TinyAsyncError) -> Datagram {
    try beginReceive(max: max, "UDPSocket.receive(max:)")
    defer { isReceiving = false }
    if let kept = kept.take() { return kept }
    do {
      _ = try await DatagramWait(.receive(max: max), on: self).wait().get()
    } catch {
      throw error.with(context: receiveContext)
    }
    return justReceived.take()!
  }

  /// An error's context for a receive: `receive from 127.0.0.1:9` on a
  /// connected socket (whose peer may refuse), else `receive`.
  var receiveContext: String {
    connectedPeer.map { "receive from \($0)" } ?? "receive"
  }

  /// The checks of every receive, in both forms; then marks the socket as
  /// being received on (the caller clears it) with room for `max` bytes.
  func beginReceive(max: Int, _ operation: StaticString) throws(TinyAsyncError) {
    loop.checkThread(operation)
    ensure((0...65536).contains(max), "\(operation) needs max in 0...65536, got \(max)")
    guard fd >= 0 else { throw .closed }
    ensure(!isReceiving, "\(operation): another task or fiber is receiving on this UDPSocket")
    isReceiving = true
    if receiveCapacity < Swift.max(max, 1) {
      free(receiveBuffer)
      receiveCapacity = Swift.max(max, 1)
      receiveBuffer = malloc(receiveCapacity)!
    }
  }

  /// The datagram the receive op left in the buffer: `count` bytes, the
  /// op's sender and flags.
  func takeReceived(count: Int) -> Datagram {
    let op = receiveOp
    let bytes = [UInt8](UnsafeRawBufferPointer(start: receiveBuffer, count: count))
    return Datagram(
      bytes: bytes, sender: sender(op.pointee.addr, op.pointee.addrlen),
      truncated: op.pointee.msg_flags & Int32(MSG_TRUNC) != 0)
  }

  /// The sender at `storage`, parsed once per new peer.
  func sender(_ storage: sockaddr_storage, _ length: socklen_t) -> SocketAddress {
    if let last = lastSender, last.length == length,
      withUnsafeBytes(of: last.storage, { a in withUnsafeBytes(of: storage) { b in memcmp(a.baseAddress!, b.baseAddress!, Int(length)) == 0 } })
    {
      return last.address
    }
    let address = SocketAddress(storage, length: length) ?? .unix("")
    lastSender = (storage, length, address)
    return address
  }

  // MARK: Sending

  /// Sends `bytes` as one datagram to `address`, waiting while the
  /// socket's buffer is full.
  ///
  /// - Throws: `EMSGSIZE` for more than fits a datagram (65,507 bytes over
  ///   IPv4), `EACCES` to a broadcast address without
  ///   ``setBroadcast(_:)``, ``TinyAsyncError/connectionRefused``,
  ///   ``TinyAsyncError/closed``, ``TinyAsyncError/cancelled``,
  ///   ``TinyAsyncError/timedOut``.
  public func send(_ bytes: some Collection<UInt8>, to address: SocketAddress) async throws(TinyAsyncError) {
    let (storage, length) = try beginSend(bytes, to: address, "UDPSocket.send(_:to:)")
    defer { isSending = false }
    do {
      _ = try await DatagramWait(.send(count: bytes.count, address: storage, length: length), on: self).wait().get()
    } catch {
      throw error.with(context: sendContext(to: address))
    }
  }

  /// Sends `bytes` as one datagram to the peer of ``connect(to:)``.
  /// - Throws: `EDESTADDRREQ` when not connected; the errors of
  ///   ``send(_:to:)-qwel``.
  public func send(_ bytes: some Collection<UInt8>) async throws(TinyAsyncError) {
    let (storage, length) = try beginSend(bytes, to: nil, "UDPSocket.send(_:)")
    defer { isSending = false }
    do {
      _ = try await DatagramWait(.send(count: bytes.count, address: storage, length: length), on: self).wait().get()
    } catch {
      throw error.with(context: sendContext(to: nil))
    }
  }

  /// An error's context for a send: `send to 127.0.0.1:9` (the connected
  /// peer's address when `address` is `nil`).
  func sendContext(to address: SocketAddress?) -> String {
    if let address = address ?? connectedPeer { return "send to \(address)" }
    return "send (not connected)"
  }

  /// The checks of every send, in both forms; copies the bytes into the
  /// send buffer (one memcpy: a datagram is at most 64 KiB) and marks the
  /// socket as sending. Returns the kernel's form of `address` (length 0
  /// for none).
  func beginSend(
    _ bytes: some Collection<UInt8>, to address: SocketAddress?, _ operation: StaticString
  ) throws(TinyAsyncError) -> (sockaddr_storage, socklen_t) {
    loop.checkThread(operation)
    guard fd >= 0 else { throw .closed }
    ensure(!isSending, "\(operation): another task or fiber is sending on this UDPSocket")
    var target = (sockaddr_storage(), socklen_t(0))
    if let address {
      if let last = lastTarget, last.address == address {
        target = (last.storage, last.length)
      } else {
        target = try address.storage()
        lastTarget = (address, target.0, target.1)
      }
    }
    let count = bytes.count
    let base = sendStorage.reserve(Swift.max(count, 1))
    sendBuffer = base
    let to = base.assumingMemoryBound(to: UInt8.self)
    let copied = bytes.withContiguousStorageIfAvailable { source in
      if count > 0 { to.update(from: source.baseAddress!, count: count) }
      return true
    }
    if copied == nil { _ = UnsafeMutableBufferPointer(start: to, count: count).initialize(from: bytes) }
    isSending = true
    return target
  }

  // MARK: Options

  /// Allows (or again refuses) sends to a broadcast address
  /// (`SO_BROADCAST`).
  public func setBroadcast(_ enabled: Bool) throws(TinyAsyncError) {
    loop.checkThread("UDPSocket.setBroadcast(_:)")
    guard fd >= 0 else { throw .closed }
    _ = try TinyAsyncError.check(cloop_udp_set_broadcast(fd, enabled ? 1 : 0))
  }

  /// Joins the multicast `group` (numeric, of the socket's family) on the
  /// interface named `interface` (`"lo"`, `"eth0"`; `nil`: the kernel's
  /// choice by route).
  /// - Throws: `EINVAL` for an address that is no multicast group,
  ///   `ENODEV` for no such interface.
  public func joinMulticastGroup(_ group: String, interface: String? = nil) throws(TinyAsyncError) {
    try membership(group, interface, join: true, "UDPSocket.joinMulticastGroup(_:interface:)")
  }

  /// Leaves a group joined with ``joinMulticastGroup(_:interface:)``.
  /// - Throws: `EADDRNOTAVAIL` for a group not joined.
  public func leaveMulticastGroup(_ group: String, interface: String? = nil) throws(TinyAsyncError) {
    try membership(group, interface, join: false, "UDPSocket.leaveMulticastGroup(_:interface:)")
  }

  private func membership(
    _ group: String, _ interface: String?, join: Bool, _ operation: StaticString
  ) throws(TinyAsyncError) {
    loop.checkThread(operation)
    guard fd >= 0 else { throw .closed }
    let rc: Int32
    if let interface {
      rc = cloop_udp_membership(fd, group, interface, join ? 1 : 0)
    } else {
      rc = cloop_udp_membership(fd, group, nil, join ? 1 : 0)
    }
    _ = try TinyAsyncError.check(rc)
  }

  /// Whether this host's own sockets get what this one sends to a
  /// multicast group (on by default).
  public func setMulticastLoopback(_ enabled: Bool) throws(TinyAsyncError) {
    loop.checkThread("UDPSocket.setMulticastLoopback(_:)")
    guard fd >= 0 else { throw .closed }
    _ = try TinyAsyncError.check(cloop_udp_set_multicast_loop(fd, enabled ? 1 : 0))
  }

  // MARK: Closing

  /// Closes the socket. A task or fiber waiting on it wakes with
  /// ``TinyAsyncError/closed``; a sequence over it ends. Closing twice is
  /// fine.
  public func close() {
    loop.checkThread("UDPSocket.close()")
    guard fd >= 0 else { return }
    let fd = self.fd
    self.fd = -1
    kept = nil
    _ = cloop_close_fd(loop.cLoop, fd)
  }

  /// `true` once ``close()`` was called.
  public var isClosed: Bool {
    loop.checkThread("UDPSocket.isClosed")
    return fd < 0
  }
}

@available(*, unavailable, message: "a UDPSocket belongs to its loop's thread")
extension UDPSocket: Sendable {}

extension UDPSocket: AsyncSequence {
  /// Each element is a datagram, of up to 65,536 bytes (so never
  /// truncated).
  public typealias Element = Datagram
  /// Iterating throws only ``TinyAsyncError``.
  public typealias Failure = TinyAsyncError

  /// An iterator over the datagrams as they arrive.
  public func makeAsyncIterator() -> Iterator {
    Iterator(socket: self)
  }

  /// Receives datagram after datagram; `nil` once the socket is closed.
  /// Errors (a refused peer, cancellation, a timeout) are thrown.
  ///
  /// ```swift
  /// for try await datagram in socket {
  ///     try await socket.send(datagram.bytes, to: datagram.sender)
  /// }
  /// ```
  public struct Iterator: AsyncIteratorProtocol {
    /// A datagram.
    public typealias Element = Datagram
    /// Only ``TinyAsyncError``.
    public typealias Failure = TinyAsyncError

    let socket: UDPSocket

    /// The next datagram, or `nil` once the socket is closed.
    public mutating func next() async throws(TinyAsyncError) -> Datagram? {
      do {
        return try await socket.receive(max: 65536)
      } catch .closed {
        return nil
      }
    }
  }
}

@available(*, unavailable, message: "a UDPSocket belongs to its loop's thread")
extension UDPSocket.Iterator: Sendable {}
