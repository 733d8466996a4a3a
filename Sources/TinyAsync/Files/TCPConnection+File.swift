internal import CLoop

// Streaming a file into a connection (a static file server's body): the
// file is read in 64 KiB requests (io_uring's READ, or the work pool) and
// each chunk written with the connection's usual write, so only the
// calling task waits and the loop serves its other connections between
// chunks. Read and send rather than splice(2): the same on both backends,
// and a 64 KiB copy costs ~5 µs.

extension TCPConnection {
  /// The bytes one file read asks for while streaming.
  static let fileChunk = 64 * 1024

  /// Sends `count` bytes of `file` from `offset` (`nil`: to the end of the
  /// file) and returns how many went: fewer than `count` only when the file
  /// ends first.
  ///
  /// ```swift
  /// let page = try await File.open("/srv/index.html")
  /// try await connection.write("HTTP/1.1 200 OK\r\nContent-Length: \(try await page.stat().size)\r\n\r\n")
  /// try await connection.send(file: page)
  /// ```
  ///
  /// - Throws: the file's read errors (with its path) and the
  ///   connection's write errors (``TinyAsyncError/brokenPipe``, ...);
  ///   ``TinyAsyncError/cancelled``, ``TinyAsyncError/timedOut`` -- how
  ///   much the peer got is then unknown.
  @discardableResult
  public func send(file: File, offset: Int = 0, count: Int? = nil) async throws(TinyAsyncError) -> Int {
    loop.checkThread("TCPConnection.send(file:offset:count:)")
    ensure(file.loop === loop, "TCPConnection.send(file:): the file belongs to another loop")
    try file.begin("TCPConnection.send(file:offset:count:)", offset: offset, count: count ?? 0)
    defer { file.end() }
    let buffer = UnsafeMutableRawPointer.allocate(byteCount: Self.fileChunk, alignment: 16)
    defer { buffer.deallocate() }
    var sent = 0
    while count.map({ sent < $0 }) ?? true {
      guard file.fd >= 0 else { throw .closed }
      let want = Swift.min(Self.fileChunk, count.map { $0 - sent } ?? Self.fileChunk)
      let n = Int(
        try await FileWait(
          .read(fd: file.fd, buffer, count: want, offset: UInt64(offset + sent)), path: file.path, loop: loop
        ).wait().get())
      if n == 0 { break }
      try await write(UnsafeRawBufferPointer(start: buffer, count: n))
      sent += n
    }
    return sent
  }

  /// Sends `count` bytes of `file` from `offset` (`nil`: to its end), from
  /// a fiber (`cloop_file_send`): the fiber form of
  /// ``send(file:offset:count:)-(File,Int,Int?)``.
  @available(*, noasync, message: "in async code, use try await send(file:offset:count:)")
  @discardableResult
  public func send(file: File, offset: Int = 0, count: Int? = nil) throws(TinyAsyncError) -> Int {
    requireFiber("TCPConnection.send(file:offset:count:)")
    loop.checkThread("TCPConnection.send(file:offset:count:)")
    ensure(file.loop === loop, "TCPConnection.send(file:): the file belongs to another loop")
    guard fd >= 0 else { throw .closed }
    try file.begin("TCPConnection.send(file:offset:count:)", offset: offset, count: count ?? 0)
    defer { file.end() }
    ensure(!isWriting, "TCPConnection.send(file:): another task or fiber is writing this TCPConnection")
    isWriting = true
    defer { isWriting = false }
    let (socket, from) = (fd, file.fd)
    let n = fiberSuspend("TCPConnection.send(file:offset:count:)") {
      cloop_file_send(socket, from, UInt64(offset), count ?? Int.max)
    }
    if n < 0 { throw TinyAsyncError.file(code: Int32(clamping: n), path: file.path, "send") }
    return n
  }
}
