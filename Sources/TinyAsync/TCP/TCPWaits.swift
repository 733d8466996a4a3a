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

/// A connect through the C core's connector (`cloop_connect_start`: the
/// name resolved off the loop's thread, each address tried in turn), the
/// same policy as the fibers' `cloop_tcp_connect`.
///
/// Stopping is not synchronous here, and need not be: the connector is this
/// wait's own, not a socket's, so nothing else waits to reuse it. An
/// interrupted wait throws at once; the C callback still comes later (the
/// wait stays retained until then) and closes a socket that connected too
/// late to be wanted.
final class ConnectWait: LoopWait<Int32, TinyAsyncError>, @unchecked Sendable {
  /// Where to: a host and port (TCP), or a Unix socket's path.
  enum Target {
    case tcp(host: String, port: Int)
    case unix(path: String)
  }

  private let connector: UnsafeMutablePointer<cloop_connector>
  private let target: Target
  private var stopped = false

  init(loop: EventLoop, _ target: Target) {
    self.target = target
    connector = .allocate(capacity: 1)
    connector.initialize(to: cloop_connector())
    super.init(loop: loop)
  }

  deinit {
    connector.deallocate()
  }

  override func start() {
    let retained = Unmanaged.passRetained(self)
    let rc =
      switch target {
      case .tcp(let host, let port):
        host.withCString {
          cloop_connect_start(loop.cLoop, connector, $0, Int32(port), connectWaitDone, retained.toOpaque())
        }
      case .unix(let path):
        path.withCString {
          cloop_connect_unix_start(loop.cLoop, connector, $0, connectWaitDone, retained.toOpaque())
        }
      }
    if rc < 0 {
      retained.release()
      finish(.failure(TinyAsyncError(code: rc)))
    }
  }

  override func stop() {
    stopped = true
    _ = cloop_connect_cancel(connector)
  }

  /// The C callback, through `connectWaitDone`.
  fileprivate func done() {
    let result = connector.pointee.result
    if stopped {
      if result >= 0 { _ = cloop_close_fd(loop.cLoop, result) }
      return
    }
    finish(result >= 0 ? .success(result) : .failure(TinyAsyncError(code: result)))
  }
}

private let connectWaitDone: cloop_connector_fn = { connector in
  Unmanaged<ConnectWait>.fromOpaque(connector!.pointee.data).takeRetainedValue().done()
}

/// One accept on a listener through the C core's acceptor
/// (`cloop_accept_start`): a connection that left before it was taken is
/// skipped, and running out of descriptors is reported after a pause,
/// the same policy as the fibers' `cloop_sock_accept`. The acceptor is the
/// wait's own (the listener lends a spare one), so, as with a connect, an
/// interrupted wait throws at once; a connection that arrives as it is
/// interrupted is kept for the listener's next accept.
final class AcceptWait: LoopWait<Int32, TinyAsyncError>, @unchecked Sendable {
  let listener: TCPListener
  private let acceptor: UnsafeMutablePointer<cloop_acceptor>
  private var stopped = false

  init(listener: TCPListener) {
    self.listener = listener
    acceptor = listener.takeAcceptor()
    super.init(loop: listener.loop)
  }

  deinit {
    listener.giveBack(acceptor)
  }

  override func start() {
    let retained = Unmanaged.passRetained(self)
    let rc = cloop_accept_start(loop.cLoop, acceptor, listener.fd, acceptWaitDone, retained.toOpaque())
    if rc < 0 {
      retained.release()
      finish(.failure(TinyAsyncError(code: rc)))
    }
  }

  override func stop() {
    stopped = true
    _ = cloop_accept_cancel(acceptor)
  }

  /// The C callback, through `acceptWaitDone`.
  fileprivate func done() {
    let result = acceptor.pointee.result
    if stopped {
      if result >= 0 { listener.keepAccepted(result) }
      return
    }
    finish(result >= 0 ? .success(result) : .failure(TinyAsyncError(code: result)))
  }
}

private let acceptWaitDone: cloop_acceptor_fn = { acceptor in
  Unmanaged<AcceptWait>.fromOpaque(acceptor!.pointee.data).takeRetainedValue().done()
}
