internal import CLoop
internal import Glibc

/// One datagram operation of the async front on a socket's own op, a
/// receive or a send, as a ``LoopWait``: ``start()`` starts the C
/// operation (`cloop_op_recvmsg` into the socket's receive buffer,
/// `cloop_op_sendmsg` from its send buffer), ``stop()`` cancels it, and
/// the callback finishes the wait with the C result.
///
/// As with ``SocketWait``: while C holds the op, its `data` is this object,
/// retained; stopping is synchronous, so when an interrupted wait throws C
/// holds nothing of the socket's. A datagram that arrived before the
/// interruption took effect is kept by the socket for its next receive:
/// none is lost to a cancel or a timeout.
final class DatagramWait: LoopWait<Int32, TinyAsyncError>, @unchecked Sendable {
  enum Operation {
    /// One datagram of at most `max` bytes into the socket's receive
    /// buffer (which has room for them).
    case receive(max: Int)
    /// `count` bytes of the socket's send buffer to `address` (length
    /// 0: the connected peer).
    case send(count: Int, address: sockaddr_storage, length: socklen_t)
  }

  let socket: UDPSocket
  private let operation: Operation
  private let op: UnsafeMutablePointer<cloop_op>
  private var stopping = false

  init(_ operation: Operation, on socket: UDPSocket) {
    self.socket = socket
    self.operation = operation
    switch operation {
    case .receive: op = socket.receiveOp
    case .send: op = socket.sendOp
    }
    super.init(loop: socket.loop)
  }

  override func start() {
    let retained = Unmanaged.passRetained(self)
    let rc: Int32
    switch operation {
    case .receive(let max):
      rc = cloop_op_recvmsg(
        loop.cLoop, op, socket.fd, socket.receiveBuffer, max, 0, datagramWaitDone,
        retained.toOpaque())
    case .send(let count, var address, let length):
      rc = withUnsafePointer(to: &address) { address in
        address.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
          cloop_op_sendmsg(
            loop.cLoop, op, socket.fd, socket.sendBuffer, count, length == 0 ? nil : sa, length, 0,
            datagramWaitDone, retained.toOpaque())
        }
      }
    }
    if rc < 0 {
      retained.release()
      finish(.failure(TinyAsyncError(code: rc)))
    } else if op.pointee.handle.link.next != nil {
      // Done at once (epoll's first try): run its callback now rather
      // than a trip through the ready ring later (SocketWait does too).
      runCallbackNow()
    }
  }

  override func stop() {
    stopping = true
    _ = cloop_op_cancel(loop.cLoop, op)
    if op.pointee.handle.link.next != nil { runCallbackNow() }
  }

  private func runCallbackNow() {
    _ = cloop_handle_cancel(loop.cLoop, &op.pointee.handle)
    op.pointee.handle.fn(op.pointee.handle.arg)
  }

  /// The C callback, through `datagramWaitDone`.
  fileprivate func done() {
    let result = op.pointee.result
    if case .receive = operation, result >= 0 {
      let datagram = socket.takeReceived(count: Int(result))
      if stopping {
        socket.kept = datagram  // won the race with the interruption
        return
      }
      socket.justReceived = datagram
    }
    if stopping { return }
    finish(result >= 0 ? .success(result) : .failure(TinyAsyncError(code: result)))
  }
}

/// The one C callback of every ``DatagramWait``; `data` is the wait, retained.
private let datagramWaitDone: cloop_op_fn = { op in
  Unmanaged<DatagramWait>.fromOpaque(op!.pointee.data).takeRetainedValue().done()
}
