internal import CLoop
internal import Glibc

/// One socket operation of the async front on a connection's own op, a
/// recv or a send, as a ``LoopWait``: ``start()`` starts the C operation
/// (`cloop_op_recv`, `cloop_op_send`), ``stop()`` cancels it, and the
/// operation's callback finishes the wait with the C result (`>= 0`, or
/// the error it maps to).
///
/// The `cloop_op` is its connection's (one per side), so steady-state I/O
/// allocates only this object. While C holds the op, the op's `data` is
/// this object, retained; the callback takes that reference back.
///
/// Stopping is synchronous: `cloop_op_cancel` leaves the op complete on
/// both backends (io_uring cancels synchronously) with its callback queued,
/// and ``stop()`` runs that callback at once. So when an interrupted wait
/// throws, C holds no pointer to the op, its buffer or this object, and the
/// connection can start its next operation straight away. Bytes that won
/// the race with the interruption are not lost: the callback counts a
/// recv's bytes into the read buffer, finished or interrupted, for the
/// next read.
///
/// The two operations are an enum, as `SyncWait`'s are: they differ only
/// in the C call that starts them and in what a recv's result does to the
/// buffer.
final class SocketWait: LoopWait<Int32, TinyAsyncError>, @unchecked Sendable {
  enum Operation {
    /// A recv into the free tail of the connection's read buffer
    /// (``ReadBuffer/reserveTail(_:)`` first).
    case recv
    /// One send of `count` bytes from `bytes` (the connection's send
    /// buffer).
    case send(UnsafeRawPointer, count: Int)
  }

  let connection: TCPConnection
  private let operation: Operation
  private let op: UnsafeMutablePointer<cloop_op>
  private var stopping = false

  init(_ operation: Operation, on connection: TCPConnection) {
    self.connection = connection
    self.operation = operation
    switch operation {
    case .recv: op = connection.recvOp
    case .send: op = connection.sendOp
    }
    super.init(loop: connection.loop)
  }

  override func start() {
    let retained = Unmanaged.passRetained(self)
    let rc: Int32
    switch operation {
    case .recv:
      let (bytes, room) = connection.readBuffer.tail
      rc = cloop_op_recv(loop.cLoop, op, connection.fd, bytes, room, 0, socketWaitDone, retained.toOpaque())
    case .send(let bytes, let count):
      rc = cloop_op_send(
        loop.cLoop, op, connection.fd, bytes, count, Int32(MSG_NOSIGNAL), socketWaitDone, retained.toOpaque())
    }
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

  override func stop() {
    stopping = true
    _ = cloop_op_cancel(loop.cLoop, op)
    if op.pointee.handle.link.next != nil { runCallbackNow() }
  }

  private func runCallbackNow() {
    _ = cloop_handle_cancel(loop.cLoop, &op.pointee.handle)
    op.pointee.handle.fn(op.pointee.handle.arg)
  }

  /// The C callback, through `socketWaitDone`.
  fileprivate func done() {
    let result = op.pointee.result
    // Also when interrupted: the bytes are in the buffer, for the next read.
    if case .recv = operation, result > 0 { connection.readBuffer.received(Int(result)) }
    if stopping { return }
    finish(result >= 0 ? .success(result) : .failure(TinyAsyncError(code: result)))
  }
}

/// The one C callback of every ``SocketWait``; `data` is the wait, retained.
private let socketWaitDone: cloop_op_fn = { op in
  Unmanaged<SocketWait>.fromOpaque(op!.pointee.data).takeRetainedValue().done()
}
