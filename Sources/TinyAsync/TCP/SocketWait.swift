internal import CLoop
internal import Glibc

/// One socket operation of the async front on a connection's own op (recv,
/// send) as a ``LoopWait``: ``start()`` starts the C operation (`cloop_op_*`),
/// ``stop()`` cancels it, and the operation's callback finishes the wait
/// with the C result (`>= 0`, or the error it maps to).
///
/// The `cloop_op` is its socket's (a connection has one per side, a
/// listener one), so steady-state I/O allocates only this object. While C
/// holds the op, the op's `data` is this object, retained; the callback
/// takes that reference back.
///
/// Stopping is synchronous: `cloop_op_cancel` leaves the op complete on
/// both backends (io_uring cancels synchronously) with its callback queued,
/// and ``stop()`` runs that callback at once. So when an interrupted wait
/// throws, C holds no pointer to the op, its buffer or this object, and the
/// socket can start its next operation straight away. A result that won
/// the race with the interruption (bytes read, a new fd) is not lost: the
/// callback hands it to ``completed(_:interrupted:)``, which keeps it for
/// the socket's next operation.
class SocketWait: LoopWait<Int32, TinyAsyncError>, @unchecked Sendable {
  let op: UnsafeMutablePointer<cloop_op>
  private var stopping = false

  init(loop: EventLoop, op: UnsafeMutablePointer<cloop_op>) {
    self.op = op
    super.init(loop: loop)
  }

  /// Starts the C operation on `op` with `socketWaitDone` and `data`; returns
  /// what `cloop_op_*` returned.
  func submit(_ data: UnsafeMutableRawPointer) -> Int32 { fatalError("abstract") }

  /// The operation's result arrived, before any finish. `interrupted`: the
  /// wait is being stopped, so the result goes nowhere unless kept here.
  func completed(_ result: Int32, interrupted: Bool) {}

  final override func start() {
    let retained = Unmanaged.passRetained(self)
    let rc = submit(retained.toOpaque())
    if rc < 0 {
      retained.release()
      finish(.failure(TinyAsyncError(code: rc)))
    } else if op.pointee.handle.link.next != nil {
      // Done at once (epoll: the first try worked) and its callback is
      // queued for the next batch: run it now, which saves the task a trip
      // through the ready ring (net.c does the same).
      runCallbackNow()
    }
  }

  final override func stop() {
    stopping = true
    _ = cloop_op_cancel(loop.cLoop, op)
    if op.pointee.handle.link.next != nil { runCallbackNow() }
  }

  private func runCallbackNow() {
    _ = cloop_handle_cancel(loop.cLoop, &op.pointee.handle)
    op.pointee.handle.fn(op.pointee.handle.arg)
  }

  /// The C callback, through `socketWaitDone`.
  fileprivate final func done() {
    let result = op.pointee.result
    completed(result, interrupted: stopping)
    if stopping { return }
    finish(result >= 0 ? .success(result) : .failure(TinyAsyncError(code: result)))
  }
}

/// The one C callback of every ``SocketWait``; `data` is the wait, retained.
let socketWaitDone: cloop_op_fn = { op in
  Unmanaged<SocketWait>.fromOpaque(op!.pointee.data).takeRetainedValue().done()
}

/// A recv into the free tail of a connection's read buffer. The bytes are
/// counted into the buffer by the callback, also when the wait was
/// interrupted, so a cancelled or timed-out read loses nothing.
final class RecvWait: SocketWait, @unchecked Sendable {
  let connection: TCPConnection

  init(connection: TCPConnection) {
    self.connection = connection
    super.init(loop: connection.loop, op: connection.recvOp)
  }

  override func submit(_ data: UnsafeMutableRawPointer) -> Int32 {
    let buffer = connection.readBuffer
    return cloop_op_recv(
      loop.cLoop, op, connection.fd, buffer.base! + buffer.end, buffer.capacity - buffer.end, 0,
      socketWaitDone, data)
  }

  override func completed(_ result: Int32, interrupted: Bool) {
    if result > 0 { connection.readBuffer.end += Int(result) }
  }
}

/// One send of `count` bytes from `bytes` (the connection's send buffer).
final class SendWait: SocketWait, @unchecked Sendable {
  let connection: TCPConnection
  let bytes: UnsafeRawPointer
  let count: Int

  init(connection: TCPConnection, bytes: UnsafeRawPointer, count: Int) {
    self.connection = connection
    self.bytes = bytes
    self.count = count
    super.init(loop: connection.loop, op: connection.sendOp)
  }

  override func submit(_ data: UnsafeMutableRawPointer) -> Int32 {
    cloop_op_send(loop.cLoop, op, connection.fd, bytes, count, Int32(MSG_NOSIGNAL), socketWaitDone, data)
  }
}
