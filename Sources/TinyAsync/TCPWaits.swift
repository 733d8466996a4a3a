internal import CLoop
internal import Glibc

/// One socket operation of the async front (accept, connect, recv, send)
/// as a ``LoopWait``: ``start()`` starts the C operation (`cloop_op_*`),
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
    } else if op.pointee.handle.next != nil {
      // Done at once (epoll: the first try worked) and its callback is
      // queued for the next batch: run it now, which saves the task a trip
      // through the ready ring (net.c does the same).
      runCallbackNow()
    }
  }

  final override func stop() {
    stopping = true
    _ = cloop_op_cancel(loop.cLoop, op)
    if op.pointee.handle.next != nil { runCallbackNow() }
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

/// One connect of a new connection's socket (on its sending side's op).
final class ConnectWait: SocketWait, @unchecked Sendable {
  let connection: TCPConnection
  let address: SocketAddress

  init(connection: TCPConnection, address: SocketAddress) {
    self.connection = connection
    self.address = address
    super.init(loop: connection.loop, op: connection.sendOp)
  }

  override func submit(_ data: UnsafeMutableRawPointer) -> Int32 {
    address.withSockaddr { sa, len in
      cloop_op_connect(loop.cLoop, op, connection.fd, sa, len, socketWaitDone, data)
    }
  }
}

/// One accept on a listener. A connection that arrives as the wait is
/// interrupted is kept for the listener's next accept.
final class AcceptWait: SocketWait, @unchecked Sendable {
  let listener: TCPListener

  init(listener: TCPListener) {
    self.listener = listener
    super.init(loop: listener.loop, op: listener.acceptOp)
  }

  override func submit(_ data: UnsafeMutableRawPointer) -> Int32 {
    cloop_op_accept(loop.cLoop, op, listener.fd, socketWaitDone, data)
  }

  override func completed(_ result: Int32, interrupted: Bool) {
    if interrupted && result >= 0 { listener.keepAccepted(result) }
  }
}

// MARK: Addresses

/// A socket address (IPv4 or IPv6) in the form `connect(2)` takes.
struct SocketAddress: @unchecked Sendable {  // plain bytes
  var storage = sockaddr_storage()
  var length: socklen_t = 0

  /// A numeric IPv4 or IPv6 address ("127.0.0.1", "::1"), or nil.
  init?(numeric host: String, port: Int) {
    var v4 = sockaddr_in()
    var v6 = sockaddr_in6()
    if inet_pton(AF_INET, host, &v4.sin_addr) == 1 {
      v4.sin_family = sa_family_t(AF_INET)
      v4.sin_port = UInt16(truncatingIfNeeded: port).bigEndian
      self.init(copying: &v4)
    } else if inet_pton(AF_INET6, host, &v6.sin6_addr) == 1 {
      v6.sin6_family = sa_family_t(AF_INET6)
      v6.sin6_port = UInt16(truncatingIfNeeded: port).bigEndian
      self.init(copying: &v6)
    } else {
      return nil
    }
  }

  init<Address>(copying address: inout Address) {
    length = socklen_t(MemoryLayout<Address>.size)
    withUnsafeMutableBytes(of: &storage) { to in
      withUnsafeBytes(of: &address) { to.copyMemory(from: $0) }
    }
  }

  init(_ sa: UnsafePointer<sockaddr>, length: socklen_t) {
    self.length = min(length, socklen_t(MemoryLayout<sockaddr_storage>.size))
    withUnsafeMutableBytes(of: &storage) { to in
      to.copyMemory(from: UnsafeRawBufferPointer(start: sa, count: Int(self.length)))
    }
  }

  var family: Int32 { Int32(storage.ss_family) }

  func withSockaddr<R>(_ body: (UnsafePointer<sockaddr>, socklen_t) -> R) -> R {
    withUnsafeBytes(of: storage) { raw in
      body(raw.baseAddress!.assumingMemoryBound(to: sockaddr.self), length)
    }
  }
}

/// A name lookup (`getaddrinfo`) on a short-lived thread of its own, so the
/// loop does not block; the answer comes back through the loop's
/// ``ThreadSafeHandle``. An interrupted wait abandons the lookup: the thread
/// finishes and its answer is dropped. The loop holds a reference
/// (``EventLoop/ref()``) while an answer is owed, as net.c's lookup does.
final class ResolveWait: LoopWait<[SocketAddress], TinyAsyncError>, @unchecked Sendable {
  /// What the lookup thread holds: never the wait itself, whose last
  /// reference must not go on that thread (the wait holds the loop, and a
  /// loop must be freed on its own thread). `wait` is loop-thread only.
  private final class Lookup: @unchecked Sendable {
    var wait: ResolveWait?
  }

  let host: String
  let port: Int
  private var lookup: Lookup?

  init(loop: EventLoop, host: String, port: Int) {
    self.host = host
    self.port = port
    super.init(loop: loop)
  }

  override func start() {
    let lookup = Lookup()
    lookup.wait = self
    self.lookup = lookup
    loop.ref()
    let handle = loop.threadSafeHandle
    let host = host, port = port
    let started = startDetachedThread {
      let answer = ResolveWait.lookup(host: host, port: port)
      handle.call { lookup.wait?.answered(answer) }
    }
    if !started {
      answered(.failure(TinyAsyncError(code: -EAGAIN)))
    }
  }

  override func stop() {
    abandon()
  }

  /// Unlinks the lookup (its answer will find nobody) and drops the loop
  /// reference.
  private func abandon() {
    guard let lookup else { return }
    lookup.wait = nil
    self.lookup = nil
    loop.unref()
  }

  private func answered(_ answer: Result<[SocketAddress], TinyAsyncError>) {
    abandon()
    finish(answer)
  }

  /// Blocking; on the lookup thread. Errors as net.c maps them.
  static func lookup(host: String, port: Int) -> Result<[SocketAddress], TinyAsyncError> {
    var hints = addrinfo()
    hints.ai_family = AF_UNSPEC
    hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
    hints.ai_protocol = Int32(IPPROTO_TCP)
    hints.ai_flags = AI_NUMERICSERV
    var list: UnsafeMutablePointer<addrinfo>?
    let rc = getaddrinfo(host, String(port), &hints, &list)
    let savedErrno = errno
    defer { if let list { freeaddrinfo(list) } }
    switch rc {
    case 0:
      var addresses: [SocketAddress] = []
      var node = list
      while let n = node {
        if let sa = n.pointee.ai_addr { addresses.append(SocketAddress(sa, length: n.pointee.ai_addrlen)) }
        node = n.pointee.ai_next
      }
      return addresses.isEmpty ? .failure(.hostNotFound) : .success(addresses)
    case EAI_AGAIN: return .failure(TinyAsyncError(code: -EAGAIN))
    case EAI_MEMORY: return .failure(.outOfMemory)
    case EAI_SYSTEM: return .failure(TinyAsyncError(code: savedErrno > 0 ? -savedErrno : -EIO))
    default: return .failure(.hostNotFound)
    }
  }
}

/// Runs `body` on a new detached POSIX thread; false if none could start.
func startDetachedThread(_ body: @escaping @Sendable () -> Void) -> Bool {
  final class Box: @unchecked Sendable {
    let body: @Sendable () -> Void
    init(_ body: @escaping @Sendable () -> Void) { self.body = body }
  }
  var attributes = pthread_attr_t()
  pthread_attr_init(&attributes)
  pthread_attr_setdetachstate(&attributes, Int32(PTHREAD_CREATE_DETACHED))
  defer { pthread_attr_destroy(&attributes) }
  let box = Unmanaged.passRetained(Box(body))
  var thread = pthread_t()
  let rc = pthread_create(&thread, &attributes, { arg in
    Unmanaged<Box>.fromOpaque(arg!).takeRetainedValue().body()
    return nil
  }, box.toOpaque())
  if rc != 0 {
    box.release()
    return false
  }
  return true
}
