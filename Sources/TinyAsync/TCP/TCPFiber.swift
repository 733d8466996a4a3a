internal import CLoop
internal import Glibc

// The fiber forms of TCPConnection's waits: the same names as the async
// ones, synchronous and throwing. Swift picks these in a fiber and the
// async ones in async code. Each parks only the calling fiber, in the C
// core's coroutine-level socket calls (cloop_tcp_connect, cloop_sock_recv,
// cloop_sock_sendall), through `fiberSuspend`. Cancelling the fiber makes
// the wait throw ``TinyAsyncError/cancelled``; an expired fiber
// ``withTimeout(_:_:)`` makes it throw ``TinyAsyncError/timedOut``.
//
// Reads go through the connection's read buffer, as the async ones do, so
// both fronts may take turns on one connection and `read(until:max:)`
// behaves the same in both (bytes after the delimiter, and the `max` bytes
// of a `delimiterNotFound`, stay buffered). That is also why it is not
// cloop_sock_recv_until: that call peeks and then consumes (two syscalls
// per arrival) and consumes what it read when the delimiter is missing.

extension TCPConnection {
  /// Connects to `host`:`port`, from a fiber: the fiber form of
  /// ``connect(host:port:)-(String,Int)``; names are looked up off the loop's
  /// thread, each address tried in turn.
  ///
  /// - Throws: ``TinyAsyncError/connectionRefused``,
  ///   ``TinyAsyncError/hostNotFound``, ``TinyAsyncError/cancelled``,
  ///   ``TinyAsyncError/timedOut``, other system errors.
  @available(*, noasync, message: "in async code, use try await TCPConnection.connect(host:port:)")
  public static func connect(host: String, port: Int) throws(TinyAsyncError) -> TCPConnection {
    requireFiber("TCPConnection.connect(host:port:)")
    let loop = EventLoop.running(for: "TCPConnection.connect(host:port:)")
    try TinyAsyncError.checkPort(port, "connect to \(host)")
    let fd = host.withCString { host in
      fiberSuspend("TCPConnection.connect(host:port:)") { cloop_tcp_connect(host, Int32(port)) }
    }
    if fd < 0 { throw TinyAsyncError(code: fd, context: "connect to \(TinyAsyncError.endpoint(host, port))") }
    return TCPConnection(fd: fd, loop: loop)
  }

  /// Connects to the Unix domain stream socket at `path` (or `"@name"`),
  /// from a fiber: the fiber form of ``connect(unixPath:)-(String)``.
  @available(*, noasync, message: "in async code, use try await TCPConnection.connect(unixPath:)")
  public static func connect(unixPath path: String) throws(TinyAsyncError) -> TCPConnection {
    requireFiber("TCPConnection.connect(unixPath:)")
    let loop = EventLoop.running(for: "TCPConnection.connect(unixPath:)")
    let fd = path.withCString { path in
      fiberSuspend("TCPConnection.connect(unixPath:)") { cloop_unix_connect(path) }
    }
    if fd < 0 { throw TinyAsyncError(code: fd, context: "connect to unix:\(path)") }
    return TCPConnection(fd: fd, loop: loop)
  }

  /// Reads what has arrived, up to `max` bytes, from a fiber: the fiber
  /// form of ``read(max:)-(Int)``. Empty at end of stream.
  @available(*, noasync, message: "in async code, use try await read(max:)")
  public func read(max: Int = 65536) throws(TinyAsyncError) -> [UInt8] {
    requireFiber("TCPConnection.read(max:)")
    var read = try beginRead(.available, max: max, "TCPConnection.read(max:)")
    defer { isReading = false }
    while let wanted = try read.wanted(readBuffer) { read.received(try fillInFiber(wanted: wanted)) }
    return readBuffer.take(read.length)
  }

  /// Appends what has arrived, up to `max` bytes, to `buffer`, from a
  /// fiber: the fiber form of ``read(into:max:)-(_,Int)``. Returns the count, 0
  /// at end of stream.
  @available(*, noasync, message: "in async code, use try await read(into:max:)")
  public func read(into buffer: inout [UInt8], max: Int = 65536) throws(TinyAsyncError) -> Int {
    requireFiber("TCPConnection.read(into:max:)")
    var read = try beginRead(.available, max: max, "TCPConnection.read(into:max:)")
    defer { isReading = false }
    while let wanted = try read.wanted(readBuffer) { read.received(try fillInFiber(wanted: wanted)) }
    readBuffer.take(read.length, appendingTo: &buffer)
    return read.length
  }

  /// Reads up to and including the first `delimiter`, from a fiber: the
  /// fiber form of ``read(until:max:)-([UInt8],Int)``, with the same
  /// end-of-stream answer and ``TinyAsyncError/delimiterNotFound`` (the
  /// `max` bytes stay buffered).
  @available(*, noasync, message: "in async code, use try await read(until:max:)")
  public func read(until delimiter: [UInt8], max: Int = 65536) throws(TinyAsyncError) -> [UInt8] {
    requireFiber("TCPConnection.read(until:max:)")
    var read = try beginRead(.through(delimiter), max: max, "TCPConnection.read(until:max:)")
    defer { isReading = false }
    while let wanted = try read.wanted(readBuffer) { read.received(try fillInFiber(wanted: wanted)) }
    return readBuffer.take(read.length)
  }

  /// The fiber form of ``read(until:max:)-(UInt8,Int)``, with a one-byte
  /// delimiter.
  @available(*, noasync, message: "in async code, use try await read(until:max:)")
  public func read(until delimiter: UInt8, max: Int = 65536) throws(TinyAsyncError) -> [UInt8] {
    try read(until: [delimiter], max: max)
  }

  /// One `cloop_sock_recv` into the buffer's free tail; 0 at end of stream.
  /// No access to the connection is held while the fiber is parked.
  private func fillInFiber(wanted: Int) throws(TinyAsyncError) -> Int {
    guard fd >= 0 else { throw .closed }
    readBuffer.reserveTail(Swift.min(wanted, Self.maxChunk))
    let fd = self.fd
    let (to, room) = readBuffer.tail
    let n = try fiberCall("TCPConnection.read") { cloop_sock_recv(fd, to, room) }
    readBuffer.received(n)
    return n
  }

  /// Writes all of `bytes` from a fiber (`cloop_sock_sendall`, straight
  /// from their storage: no copy): the fiber form of
  /// ``write(_:)-(Collection<UInt8>)``.
  @available(*, noasync, message: "in async code, use try await write(_:)")
  public func write(_ bytes: some Collection<UInt8>) throws(TinyAsyncError) {
    requireFiber("TCPConnection.write(_:)")
    loop.checkThread("TCPConnection.write(_:)")
    guard fd >= 0 else { throw .closed }
    ensure(!isWriting, "TCPConnection.write: another task or fiber is writing this TCPConnection")
    isWriting = true
    defer { isWriting = false }
    let fd = self.fd
    let send = { (buffer: UnsafeBufferPointer<UInt8>) in
      fiberSuspend("TCPConnection.write(_:)") { cloop_sock_sendall(fd, buffer.baseAddress, buffer.count) }
    }
    let rc = bytes.withContiguousStorageIfAvailable(send) ?? Array(bytes).withUnsafeBufferPointer(send)
    if rc < 0 { throw TinyAsyncError(code: Int32(clamping: rc)) }
  }

  /// Writes the UTF-8 bytes of `string` from a fiber: the fiber form of
  /// ``write(_:)-(String)``.
  @available(*, noasync, message: "in async code, use try await write(_:)")
  public func write(_ string: String) throws(TinyAsyncError) {
    var string = string
    string.makeContiguousUTF8()
    try write(string.utf8)
  }
}

extension TCPListener {
  /// Waits for the next connection, from a fiber: the fiber form of
  /// ``accept()-()``. Out of file descriptors it throws `EMFILE`/`ENFILE`
  /// after a 10 ms pause, so a retrying loop does not spin.
  ///
  /// - Throws: ``TinyAsyncError/closed``, ``TinyAsyncError/cancelled``,
  ///   ``TinyAsyncError/timedOut``, other system errors.
  @available(*, noasync, message: "in async code, use try await accept() or for try await ... in listener")
  public func accept() throws(TinyAsyncError) -> TCPConnection {
    requireFiber("TCPListener.accept()")
    loop.checkThread("TCPListener.accept()")
    guard fd >= 0 else { throw .closed }
    ensure(!isAccepting, "TCPListener.accept: another task or fiber is accepting on this listener")
    if !kept.isEmpty { return TCPConnection(fd: kept.removeFirst(), loop: loop) }
    isAccepting = true
    defer { isAccepting = false }
    let fd = self.fd
    let newFD = try fiberCall("TCPListener.accept()") { cloop_sock_accept(fd) }
    return TCPConnection(fd: newFD, loop: loop)
  }
}
