internal import CLoop
internal import Glibc

// The fiber forms of File's calls: the same names as the async ones,
// synchronous and throwing. Swift picks these in a fiber and the async
// ones in async code. Each parks only the calling fiber in the C core's
// coroutine-level file calls (cloop_file_open, cloop_file_pread, ...),
// through `fiberSuspend`; cancelling the fiber makes the call throw
// ``TinyAsyncError/cancelled``, an expired fiber ``withTimeout(_:_:)``
// ``TinyAsyncError/timedOut``. Buffers are Swift arrays on the heap, so
// shared-stack fibers need no copy.

extension File {
  /// Opens the file at `path`, from a fiber: the fiber form of
  /// `open(_:mode:permissions:)`.
  @available(*, noasync, message: "in async code, use try await File.open(_:mode:permissions:)")
  public static func open(_ path: String, mode: Mode = .read, permissions: UInt32 = 0o644) throws(TinyAsyncError) -> File {
    requireFiber("File.open")
    let loop = EventLoop.running(for: "File.open")
    let fd = path.withCString { cPath in
      fiberSuspend("File.open") { cloop_file_open(cPath, mode.flags, permissions) }
    }
    if fd < 0 { throw TinyAsyncError.file(code: fd, path: path, "open") }
    return File(fd: fd, path: path, loop: loop)
  }

  /// Up to `count` bytes at `offset`, from a fiber: the fiber form of
  /// ``read(at:count:)-(Int,Int)``.
  @available(*, noasync, message: "in async code, use try await read(at:count:)")
  public func read(at offset: Int, count: Int) throws(TinyAsyncError) -> [UInt8] {
    requireFiber("File.read(at:count:)")
    try begin("File.read(at:count:)", offset: offset, count: count)
    defer { end() }
    return try readInFiber(from: offset, count: count, toEnd: false)
  }

  /// The whole file, from a fiber: the fiber form of ``readAll()-()``.
  @available(*, noasync, message: "in async code, use try await readAll()")
  public func readAll() throws(TinyAsyncError) -> [UInt8] {
    requireFiber("File.readAll()")
    try begin("File.readAll()", offset: 0, count: 0)
    defer { end() }
    let size = try statInFiber().size
    return try readInFiber(from: 0, count: Swift.max(size + 1, 4096), toEnd: true)
  }

  /// Reads `count` bytes from `offset` (to the end of the file if
  /// `toEnd`, growing past `count`), in requests of at most ``maxChunk``.
  private func readInFiber(from offset: Int, count: Int, toEnd: Bool) throws(TinyAsyncError) -> [UInt8] {
    var bytes = [UInt8](repeating: 0, count: count)
    var have = 0
    let fd = self.fd
    while true {
      if have == bytes.count {
        if !toEnd { break }
        bytes.append(contentsOf: repeatElement(0, count: bytes.count))
      }
      let want = Swift.min(bytes.count - have, Self.maxChunk)
      let n = bytes.withUnsafeMutableBytes { raw in
        fiberSuspend("File.read") { cloop_file_pread(fd, raw.baseAddress! + have, want, UInt64(offset + have)) }
      }
      if n < 0 { throw TinyAsyncError.file(code: Int32(clamping: n), path: path, "read") }
      if n == 0 { break }
      have += n
    }
    bytes.removeSubrange(have...)
    return bytes
  }

  /// Writes all of `bytes` at `offset`, from a fiber: the fiber form of
  /// ``write(_:at:)-(Collection<UInt8>,Int)``.
  @available(*, noasync, message: "in async code, use try await write(_:at:)")
  public func write(_ bytes: some Collection<UInt8>, at offset: Int) throws(TinyAsyncError) {
    requireFiber("File.write(_:at:)")
    try begin("File.write(_:at:)", offset: offset, count: 0)
    defer { end() }
    try writeInFiber(bytes, at: offset)
  }

  /// Makes the file hold exactly `bytes`, from a fiber: the fiber form of
  /// ``writeAll(_:)-(Collection<UInt8>)``.
  @available(*, noasync, message: "in async code, use try await writeAll(_:)")
  public func writeAll(_ bytes: some Collection<UInt8>) throws(TinyAsyncError) {
    requireFiber("File.writeAll(_:)")
    try begin("File.writeAll(_:)", offset: 0, count: 0)
    defer { end() }
    let count = try writeInFiber(bytes, at: 0)
    if try statInFiber().size > count {
      let fd = self.fd
      let rc: Int32
      do {
        rc = try offload { Glibc.ftruncate(fd, off_t(count)) == 0 ? 0 : -Glibc.errno }
      } catch {
        throw error as? TinyAsyncError ?? .cancelled
      }
      if rc < 0 { throw TinyAsyncError.file(code: rc, path: path, "truncate") }
    }
  }

  @discardableResult
  private func writeInFiber(_ bytes: some Collection<UInt8>, at offset: Int) throws(TinyAsyncError) -> Int {
    let fd = self.fd
    let write = { (buffer: UnsafeBufferPointer<UInt8>) -> Int in
      fiberSuspend("File.write") { cloop_file_write_all(fd, buffer.baseAddress, buffer.count, UInt64(offset)) }
    }
    let rc = bytes.withContiguousStorageIfAvailable(write) ?? Array(bytes).withUnsafeBufferPointer(write)
    if rc < 0 { throw TinyAsyncError.file(code: Int32(clamping: rc), path: path, "write") }
    return rc
  }

  /// Waits until what was written is on the disk, from a fiber: the fiber
  /// form of ``sync(dataOnly:)-(Bool)``.
  @available(*, noasync, message: "in async code, use try await sync()")
  public func sync(dataOnly: Bool = false) throws(TinyAsyncError) {
    requireFiber("File.sync()")
    try begin("File.sync()", offset: 0, count: 0)
    defer { end() }
    let fd = self.fd
    let rc = fiberSuspend("File.sync()") { cloop_file_fsync(fd, dataOnly ? 1 : 0) }
    if rc < 0 { throw TinyAsyncError.file(code: rc, path: path, "sync") }
  }

  /// The file's size, type and times, from a fiber: the fiber form of
  /// `stat()`.
  @available(*, noasync, message: "in async code, use try await stat()")
  public func stat() throws(TinyAsyncError) -> FileInfo {
    requireFiber("File.stat()")
    try begin("File.stat()", offset: 0, count: 0)
    defer { end() }
    return try statInFiber()
  }

  private func statInFiber() throws(TinyAsyncError) -> FileInfo {
    let fd = self.fd
    let record = Pinned(cloop_file_info())
    let info = record.pointer
    let rc = fiberSuspend("File.stat()") { cloop_file_stat(fd, nil, info) }
    if rc < 0 { throw TinyAsyncError.file(code: rc, path: path, "stat") }
    return FileInfo(info.pointee)
  }

  /// Closes the file, from a fiber: the fiber form of `close()`.
  @available(*, noasync, message: "in async code, use try await close()")
  public func close() throws(TinyAsyncError) {
    requireFiber("File.close()")
    loop.checkThread("File.close()")
    guard let fd = takeForClose() else { return }
    let rc = fiberSuspend("File.close()") { cloop_file_close(fd) }
    if rc < 0 { throw TinyAsyncError.file(code: rc, path: path, "close") }
  }
}
