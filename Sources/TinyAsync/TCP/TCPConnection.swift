internal import CLoop
internal import Glibc

/// A TCP connection on an ``EventLoop``: connect with
/// ``connect(host:port:)-8cw40`` or take one from ``TCPListener/accept()-753tx``; read,
/// write, shut down, close.
///
/// Every wait goes through the loop's I/O operations (`cloop_op_*`: epoll
/// readiness or io_uring completions), so it parks only the calling task,
/// throws ``TinyAsyncError/cancelled`` when that task is cancelled and
/// ``TinyAsyncError/timedOut`` in an expired ``withTimeout(_:_:)``, with the
/// operation cancelled underneath. An interrupted read loses no bytes: what
/// had arrived is kept for the next read. After an interrupted write, how
/// much of it went out is unknown (close the connection).
///
/// Reads are buffered: a read takes what has arrived, up to a buffer's
/// worth, hands out what was asked and keeps the rest for the next read —
/// which is how ``read(until:max:)-2z59d`` never loses the bytes after its
/// delimiter. One task reads and one task writes at a time (two readers at
/// once stop the program with a message); reading and writing from two
/// tasks concurrently is fine.
///
/// Loop-confined (not `Sendable`); closes its socket when it goes away.
/// Errors: ``TinyAsyncError/connectionReset`` from a peer that reset,
/// ``TinyAsyncError/brokenPipe`` writing to one that closed,
/// ``TinyAsyncError/closed`` after ``close()``.
///
/// ```swift
/// try EventLoop.run {
///     let connection = try await TCPConnection.connect(host: "127.0.0.1", port: 8080)
///     try await connection.write("hello\n")
///     let line = try await connection.read(until: UInt8(ascii: "\n"), max: 1024)
///     print(String(decoding: line, as: UTF8.self))
///     connection.close()
/// }
/// ```
public final class TCPConnection {
  /// The loop the connection belongs to.
  public let loop: EventLoop
  /// The socket, or -1 once closed.
  private(set) var fd: Int32
  /// The receiving side's operation (recv) and the sending side's
  /// (connect, send): one per side may be in flight.
  private let recvRecord = Pinned(cloop_op())
  private let sendRecord = Pinned(cloop_op())
  var recvOp: UnsafeMutablePointer<cloop_op> { recvRecord.pointer }
  var sendOp: UnsafeMutablePointer<cloop_op> { sendRecord.pointer }
  var readBuffer: ReadBuffer
  private var sendBuffer: SendBuffer
  var isReading = false
  var isWriting = false

  /// The most one recv asks for, and the largest chunk one send copies.
  static let maxChunk = 256 * 1024

  /// Adopts a connected (or connecting) non-blocking socket.
  init(fd: Int32, loop: EventLoop) {
    self.fd = fd
    self.loop = loop
    readBuffer = ReadBuffer(pool: loop.bufferPool)
    sendBuffer = SendBuffer(pool: loop.bufferPool)
  }

  deinit {
    // No operation is in flight here: each wait holds the connection until
    // its callback has run.
    if fd >= 0 { _ = cloop_close_fd(loop.cLoop, fd) }
  }

  // MARK: Connecting

  /// Connects to `host`:`port` over TCP, on the loop running this task.
  ///
  /// A numeric IPv4 or IPv6 address is used as it is; a name is looked up
  /// on a thread of its own (the loop goes on meanwhile), and each address
  /// it gives is tried in turn until one connects.
  ///
  /// - Throws: ``TinyAsyncError/connectionRefused`` when nobody listens
  ///   there, ``TinyAsyncError/hostNotFound`` for a name that does not
  ///   resolve, ``TinyAsyncError/cancelled`` / ``TinyAsyncError/timedOut``
  ///   when interrupted; other system errors as they come.
  public static func connect(host: String, port: Int) async throws(TinyAsyncError) -> TCPConnection {
    let loop = EventLoop.running(for: "TCPConnection.connect")
    try TinyAsyncError.checkPort(port, "connect to \(host)")
    let fd = try await ConnectWait(loop: loop, .tcp(host: host, port: port)).wait().get()
    return TCPConnection(fd: fd, loop: loop)
  }

  /// ``connect(host:port:)-6w9az`` given at most `timeout`, name lookup included:
  /// past it the attempt is cancelled, its socket closed, and this throws
  /// ``TinyAsyncError/timedOut``. The same as wrapping the call in
  /// ``withTimeout(_:_:)``; a zero or negative timeout fails at once,
  /// before any socket is made.
  ///
  /// ```swift
  /// let connection = try await TCPConnection.connect(host: "10.0.0.7", port: 5432, timeout: .seconds(2))
  /// ```
  ///
  /// - Throws: ``TinyAsyncError/timedOut`` when `timeout` passes first;
  ///   otherwise what ``connect(host:port:)-6w9az`` throws.
  public static func connect(host: String, port: Int, timeout: Duration) async throws(TinyAsyncError) -> TCPConnection {
    _ = EventLoop.running(for: "TCPConnection.connect(host:port:timeout:)")
    // As asyncio's wait_for: no time left, no attempt (withTimeout's timer
    // would fire only in the next iteration, after a socket was made).
    if timeout <= .zero { throw TinyAsyncError.timedOut.with(context: "connect to \(TinyAsyncError.endpoint(host, port))") }
    do {
      return try await withTimeout(timeout) { () async throws(TinyAsyncError) -> TCPConnection in
        try await connect(host: host, port: port)
      }
    } catch {
      // withTimeout throws only what its body throws, or .timedOut.
      throw error as? TinyAsyncError ?? .timedOut
    }
  }

  /// Connects to the Unix domain stream socket at `path` (or `"@name"`, a
  /// Linux abstract name), on the loop running this task. The connection is
  /// the same type as a TCP one, with the same reads and writes: code
  /// written for one works on the other.
  ///
  /// - Throws: ``TinyAsyncError/system(errno:message:context:)`` with `ENOENT` (no
  ///   such socket file), ``TinyAsyncError/connectionRefused`` (nobody
  ///   listens), `ENAMETOOLONG` (a path over 107 bytes, never cut short),
  ///   `EACCES`; ``TinyAsyncError/cancelled``, ``TinyAsyncError/timedOut``.
  public static func connect(unixPath path: String) async throws(TinyAsyncError) -> TCPConnection {
    let loop = EventLoop.running(for: "TCPConnection.connect(unixPath:)")
    let fd = try await ConnectWait(loop: loop, .unix(path: path)).wait().get()
    return TCPConnection(fd: fd, loop: loop)
  }

  // MARK: Reading

  /// Reads what has arrived, up to `max` bytes, waiting until something
  /// has. Returns an empty array at end of stream (the peer shut down its
  /// side or closed), and again on every read after.
  ///
  /// - Parameter max: The most bytes to return; more than 0.
  /// - Throws: ``TinyAsyncError/connectionReset``,
  ///   ``TinyAsyncError/closed``, ``TinyAsyncError/cancelled``,
  ///   ``TinyAsyncError/timedOut`` (no bytes are lost to the last two).
  public func read(max: Int = 65536) async throws(TinyAsyncError) -> [UInt8] {
    var read = try beginRead(.available, max: max, "TCPConnection.read(max:)")
    defer { isReading = false }
    while let wanted = try read.wanted(readBuffer) { read.received(try await fill(wanted: wanted)) }
    return readBuffer.take(read.length)
  }

  /// Like ``read(max:)-86i8m``, but appends to `buffer` (reuse one array across
  /// reads to save an allocation each). Returns the number of bytes
  /// appended: 0 at end of stream.
  ///
  /// ```swift
  /// var bytes: [UInt8] = []
  /// bytes.reserveCapacity(65536)
  /// while true {
  ///     bytes.removeAll(keepingCapacity: true)
  ///     if try await connection.read(into: &bytes, max: 65536) == 0 { break }
  ///     try await connection.write(bytes)
  /// }
  /// ```
  public func read(into buffer: inout [UInt8], max: Int = 65536) async throws(TinyAsyncError) -> Int {
    var read = try beginRead(.available, max: max, "TCPConnection.read(into:max:)")
    defer { isReading = false }
    while let wanted = try read.wanted(readBuffer) { read.received(try await fill(wanted: wanted)) }
    readBuffer.take(read.length, appendingTo: &buffer)
    return read.length
  }

  /// Reads up to and including the first `delimiter` (a line, with
  /// `"\n"`), waiting for more bytes as needed; bytes that came after it
  /// stay buffered for the next read.
  ///
  /// At end of stream it returns what came before it without a delimiter
  /// (empty if nothing did): check the last bytes to tell.
  ///
  /// - Parameters:
  ///   - delimiter: One or more bytes.
  ///   - max: The most bytes to return, delimiter included.
  /// - Throws: ``TinyAsyncError/delimiterNotFound`` when the first `max`
  ///   bytes hold no delimiter. Nothing is consumed then: those bytes stay
  ///   buffered, for ``read(max:)-86i8m`` to drain or for ``close()`` to drop.
  ///   Also the errors of ``read(max:)-86i8m``.
  public func read(until delimiter: [UInt8], max: Int = 65536) async throws(TinyAsyncError) -> [UInt8] {
    var read = try beginRead(.through(delimiter), max: max, "TCPConnection.read(until:max:)")
    defer { isReading = false }
    while let wanted = try read.wanted(readBuffer) { read.received(try await fill(wanted: wanted)) }
    return readBuffer.take(read.length)
  }

  /// ``read(until:max:)`` with a one-byte delimiter, e.g. `UInt8(ascii: "\n")`.
  public func read(until delimiter: UInt8, max: Int = 65536) async throws(TinyAsyncError) -> [UInt8] {
    try await read(until: [delimiter], max: max)
  }

  /// The checks every read makes, in both forms, then marks the
  /// connection as being read (the caller clears `isReading` when done):
  /// a read of up to `max` bytes towards `goal`.
  func beginRead(
    _ goal: BufferedRead.Goal, max: Int, _ operation: StaticString
  ) throws(TinyAsyncError) -> BufferedRead {
    loop.checkThread(operation)
    if case .through(let delimiter) = goal { ensure(!delimiter.isEmpty, "\(operation) needs a delimiter") }
    ensure(max > 0, "\(operation) needs max > 0")
    guard fd >= 0 else { throw .closed }
    ensure(!isReading, "\(operation): another task is reading this TCPConnection")
    isReading = true
    return BufferedRead(goal, max: max)
  }

  /// One recv into the buffer's free tail (made at least `wanted` bytes,
  /// up to `maxChunk`); returns the count, 0 at end of stream.
  private func fill(wanted: Int) async throws(TinyAsyncError) -> Int {
    guard fd >= 0 else { throw .closed }
    readBuffer.reserveTail(Swift.min(wanted, Self.maxChunk))
    return Int(try await SocketWait(.recv, on: self).wait().get())
  }

  // MARK: Writing

  /// Writes all of `bytes`, waiting while the socket's send buffer is full
  /// (partial writes are continued until everything is out).
  ///
  /// - Throws: ``TinyAsyncError/brokenPipe`` or
  ///   ``TinyAsyncError/connectionReset`` when the peer is gone,
  ///   ``TinyAsyncError/closed``, ``TinyAsyncError/cancelled``,
  ///   ``TinyAsyncError/timedOut``; how much went out before is unknown.
  public func write(_ bytes: some Collection<UInt8>) async throws(TinyAsyncError) {
    loop.checkThread("TCPConnection.write")
    guard fd >= 0 else { throw .closed }
    ensure(!isWriting, "TCPConnection.write: another task is writing this TCPConnection")
    isWriting = true
    defer { isWriting = false }
    if bytes.withContiguousStorageIfAvailable({ _ in () }) != nil {
      try await sendAll(bytes)
    } else {
      try await sendAll(Array(bytes))
    }
  }

  /// Writes the UTF-8 bytes of `string`, as the write of a byte collection
  /// above does.
  public func write(_ string: String) async throws(TinyAsyncError) {
    var string = string
    string.makeContiguousUTF8()
    try await write(string.utf8)
  }

  /// Sends `bytes` (contiguous): first with one `send(2)` straight from
  /// their storage, then, for what the socket did not take, chunk by chunk
  /// through the send buffer and the loop's send operation.
  private func sendAll<Bytes: Collection<UInt8>>(_ bytes: Bytes) async throws(TinyAsyncError) {
    let total = bytes.count
    if total == 0 { return }
    var offset = try sendNow(bytes)
    while offset < total {
      let chunk = Swift.min(total - offset, Self.maxChunk)
      let buffer = sendBuffer.reserve(chunk)
      _ = bytes.withContiguousStorageIfAvailable { source in
        buffer.copyMemory(from: source.baseAddress! + offset, byteCount: chunk)
      }
      var sent = 0
      while sent < chunk {
        guard fd >= 0 else { throw .closed }
        let n = try await SocketWait(.send(buffer + sent, count: chunk - sent), on: self).wait().get()
        guard n > 0 else { throw TinyAsyncError(code: -EIO) }  // send(2) of > 0 bytes moves some
        sent += Int(n)
      }
      offset += chunk
    }
  }

  /// The write fast path, as libuv's `uv_try_write` and uvloop do: one
  /// non-blocking `send(2)` from the caller's bytes before any wait. A
  /// socket with room (nearly always, for messages) takes them all, and the
  /// write returns without suspending the task: no wait object, no
  /// continuation, no trip through the ready ring. Returns how many bytes
  /// went; 0 when the socket is full. It is no suspension, but it honours
  /// one that is due: a cancelled task or an expired ``withTimeout(_:_:)``
  /// throws here as the wait would have.
  private func sendNow<Bytes: Collection<UInt8>>(_ bytes: Bytes) throws(TinyAsyncError) -> Int {
    if let error = TimeoutScope.pendingInterruption() { throw error }
    let fd = self.fd
    let sent = bytes.withContiguousStorageIfAvailable { source -> Int in
      while true {
        let n = Glibc.send(fd, source.baseAddress!, source.count, Int32(MSG_DONTWAIT | MSG_NOSIGNAL))
        if n >= 0 { return n }
        if errno == EINTR { continue }
        return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -Int(errno)
      }
    }!
    if sent < 0 { throw TinyAsyncError(code: Int32(sent)) }
    return sent
  }

  // MARK: Ending

  /// Shuts down the writing side: the peer reads end of stream once what
  /// was written has arrived; reading goes on. (asyncio's `write_eof`.)
  /// Does not wait.
  ///
  /// - Throws: ``TinyAsyncError/closed`` after ``close()``; a system error
  ///   (e.g. `ENOTCONN`) from `shutdown(2)`.
  public func shutdown() throws(TinyAsyncError) {
    loop.checkThread("TCPConnection.shutdown()")
    guard fd >= 0 else { throw .closed }
    _ = try TinyAsyncError.check(cloop_sock_shutdown(fd, Int32(SHUT_WR)))
  }

  /// Closes the connection. A task waiting in a read or write on it wakes
  /// with ``TinyAsyncError/closed``; later operations throw it too.
  /// Unread buffered bytes are dropped. Closing again does nothing; the
  /// connection closes itself when it goes away.
  public func close() {
    loop.checkThread("TCPConnection.close()")
    guard fd >= 0 else { return }
    let fd = self.fd
    self.fd = -1
    _ = cloop_close_fd(loop.cLoop, fd)
  }

  /// Gives up the socket without closing it, for a connection just
  /// accepted that another loop is to serve (a group's acceptor): it has no
  /// operation in flight and nothing buffered. The connection reads as
  /// closed after.
  func releaseDescriptor() -> Int32 {
    loop.checkThread("TCPConnection.releaseDescriptor()")
    precondition(!isReading && !isWriting && readBuffer.count == 0, "a connection in use cannot move")
    let fd = self.fd
    self.fd = -1
    return fd
  }

  /// `true` once ``close()`` was called.
  public var isClosed: Bool {
    loop.checkThread("TCPConnection.isClosed")
    return fd < 0
  }

  /// The bytes read from the socket and not yet handed out (what the next
  /// read returns first). A server that stops gracefully can tell by it
  /// whether a keep-alive connection has begun its next request.
  public var bufferedCount: Int {
    loop.checkThread("TCPConnection.bufferedCount")
    return readBuffer.count
  }

  /// The address of this end: an IP address and port, or a Unix socket's
  /// path (`""` for an unnamed client socket).
  /// - Throws: ``TinyAsyncError/closed`` after ``close()``.
  public var localAddress: SocketAddress {
    get throws(TinyAsyncError) {
      try address("TCPConnection.localAddress") { fd, sa, length in getsockname(fd, sa, length) }
    }
  }

  /// The address of the peer.
  /// - Throws: ``TinyAsyncError/closed`` after ``close()``; `ENOTCONN`
  ///   once the peer is gone.
  public var remoteAddress: SocketAddress {
    get throws(TinyAsyncError) {
      try address("TCPConnection.remoteAddress") { fd, sa, length in getpeername(fd, sa, length) }
    }
  }

  private func address(
    _ operation: StaticString,
    _ call: (Int32, UnsafeMutablePointer<sockaddr>, UnsafeMutablePointer<socklen_t>) -> Int32
  ) throws(TinyAsyncError) -> SocketAddress {
    loop.checkThread(operation)
    guard fd >= 0 else { throw .closed }
    var storage = sockaddr_storage()
    var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
    let rc = withUnsafeMutableBytes(of: &storage) { raw in
      call(fd, raw.baseAddress!.assumingMemoryBound(to: sockaddr.self), &length)
    }
    if rc < 0 { throw TinyAsyncError(code: -errno) }
    guard let address = SocketAddress(storage, length: length) else { throw TinyAsyncError(code: -EAFNOSUPPORT) }
    return address
  }

  /// Who is at the other end of a Unix domain socket connection (its
  /// process, user and group), for a local service that trusts by user.
  /// - Throws: ``TinyAsyncError/closed``; `ENOTSOCK`-like system errors
  ///   for a TCP connection, which has no credentials.
  public var peerCredentials: PeerCredentials {
    get throws(TinyAsyncError) {
      loop.checkThread("TCPConnection.peerCredentials")
      guard fd >= 0 else { throw .closed }
      var pid: Int32 = 0, uid: Int32 = 0, gid: Int32 = 0
      _ = try TinyAsyncError.check(cloop_sock_peercred(fd, &pid, &uid, &gid))
      return PeerCredentials(pid: pid, uid: UInt32(bitPattern: uid), gid: UInt32(bitPattern: gid))
    }
  }

  /// The local port of the connection.
  /// - Throws: ``TinyAsyncError/closed`` after ``close()``.
  public var localPort: Int {
    get throws(TinyAsyncError) {
      loop.checkThread("TCPConnection.localPort")
      guard fd >= 0 else { throw .closed }
      return Int(try TinyAsyncError.check(cloop_sock_port(fd)))
    }
  }

  /// The peer's port.
  /// - Throws: ``TinyAsyncError/closed`` after ``close()``; `ENOTCONN`
  ///   once the peer is gone.
  public var remotePort: Int {
    get throws(TinyAsyncError) {
      loop.checkThread("TCPConnection.remotePort")
      guard fd >= 0 else { throw .closed }
      var storage = sockaddr_storage()
      var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
      let rc = withUnsafeMutableBytes(of: &storage) { raw in
        getpeername(fd, raw.baseAddress!.assumingMemoryBound(to: sockaddr.self), &length)
      }
      if rc < 0 { throw TinyAsyncError(code: -errno) }
      return withUnsafeBytes(of: storage) { raw in
        if storage.ss_family == sa_family_t(AF_INET6) {
          Int(UInt16(bigEndian: raw.load(as: sockaddr_in6.self).sin6_port))
        } else {
          Int(UInt16(bigEndian: raw.load(as: sockaddr_in.self).sin_port))
        }
      }
    }
  }
}

@available(*, unavailable, message: "a TCPConnection belongs to its loop's thread")
extension TCPConnection: Sendable {}
