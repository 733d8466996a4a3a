internal import CLoop
internal import Glibc

// The fiber forms of UDPSocket's waits: the same names as the async ones,
// synchronous and throwing; Swift picks these in a fiber. Each parks only
// the calling fiber in the C core's task calls (cloop_udp_recvfrom,
// cloop_udp_sendto), through `fiberSuspend`. Cancelling the fiber makes
// the wait throw ``TinyAsyncError/cancelled``; an expired fiber
// ``withTimeout(_:_:)`` makes it throw ``TinyAsyncError/timedOut``.
//
// A receive lands in the socket's receive buffer (heap memory, so a fiber
// on the shared stack is safe) and the sender in the C call's own copy;
// a send goes from the caller's bytes, which the C call reads only while
// the fiber runs or from a copy it makes.

extension UDPSocket {
  /// Waits for the next datagram, from a fiber: the fiber form of
  /// ``receive(max:)-(Int)``, with its truncation rule and errors.
  @available(*, noasync, message: "in async code, use try await receive(max:)")
  public func receive(max: Int = 65536) throws(TinyAsyncError) -> Datagram {
    requireFiber("UDPSocket.receive(max:)")
    try beginReceive(max: max, "UDPSocket.receive(max:)")
    defer { isReceiving = false }
    if let kept = kept.take() { return kept }
    let fd = self.fd
    let buffer = receiveBuffer
    var storage = sockaddr_storage()
    var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
    var flags: Int32 = 0
    let n: Int
    do {
      n = try withUnsafeMutablePointer(to: &storage) { (pointer) throws(TinyAsyncError) -> Int in
        try pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { (sa) throws(TinyAsyncError) -> Int in
          try fiberCall("UDPSocket.receive(max:)") { cloop_udp_recvfrom(fd, buffer, max, sa, &length, &flags) }
        }
      }
    } catch {
      throw error.with(context: receiveContext)
    }
    let bytes = [UInt8](UnsafeRawBufferPointer(start: buffer, count: n))
    return Datagram(bytes: bytes, sender: sender(storage, length), truncated: flags & Int32(CLOOP_UDP_TRUNCATED) != 0)
  }

  /// Sends `bytes` as one datagram to `address`, from a fiber: the fiber
  /// form of ``send(_:to:)-(_,SocketAddress)``.
  @available(*, noasync, message: "in async code, use try await send(_:to:)")
  public func send(_ bytes: some Collection<UInt8>, to address: SocketAddress) throws(TinyAsyncError) {
    requireFiber("UDPSocket.send(_:to:)")
    try fiberSend(bytes, to: address, "UDPSocket.send(_:to:)")
  }

  /// Sends `bytes` to the connected peer, from a fiber: the fiber form of
  /// ``send(_:)-(_)``.
  @available(*, noasync, message: "in async code, use try await send(_:)")
  public func send(_ bytes: some Collection<UInt8>) throws(TinyAsyncError) {
    requireFiber("UDPSocket.send(_:)")
    try fiberSend(bytes, to: nil, "UDPSocket.send(_:)")
  }

  /// From the send buffer (``beginSend(_:to:_:)``'s copy): the same checks
  /// and address cache as the async form.
  private func fiberSend(
    _ bytes: some Collection<UInt8>, to address: SocketAddress?, _ operation: StaticString
  ) throws(TinyAsyncError) {
    var (storage, length) = try beginSend(bytes, to: address, operation)
    defer { isSending = false }
    let fd = self.fd
    let buffer = sendBuffer
    let count = bytes.count
    do {
      _ = try withUnsafePointer(to: &storage) { (pointer) throws(TinyAsyncError) -> Int in
        try pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { (sa) throws(TinyAsyncError) -> Int in
          try fiberCall(operation) { cloop_udp_sendto(fd, buffer, count, length == 0 ? nil : sa, length) }
        }
      }
    } catch {
      throw error.with(context: sendContext(to: address))
    }
  }
}
