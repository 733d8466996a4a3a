internal import CLoop
internal import Glibc

/// A file on an ``EventLoop``: open with `open(_:mode:permissions:)`;
/// read and write at an offset, read or replace it whole, sync it to the
/// disk, stat it, close it.
///
/// Every call goes through the C core's file operations: on io_uring the
/// kernel's own requests (`OPENAT`, `READ`, `WRITE`, `FSYNC`, `STATX`,
/// `CLOSE`), on epoll the loop's work pool (regular files are always
/// "ready" to epoll, so readiness is no answer). Either way only the
/// calling task waits, and the loop goes on with its timers and sockets
/// while the disk works. A wait throws ``TinyAsyncError/cancelled`` when
/// its task is cancelled and ``TinyAsyncError/timedOut`` in an expired
/// ``withTimeout(_:_:)``, with the operation cancelled underneath; after an
/// interrupted write, how much reached the file is unknown.
///
/// Reads and writes name their offset, so several tasks may use one file
/// at once. Errors carry the operation and the path in their
/// ``TinyAsyncError/context`` (`open /etc/nope: No such file or directory
/// (errno 2)`); ``TinyAsyncError/closed`` after `close()`.
///
/// Loop-confined (not `Sendable`); closes its descriptor when it goes away.
///
/// ```swift
/// try EventLoop.run {
///     let file = try await File.open("/tmp/greeting", mode: .write)
///     try await file.writeAll(Array("hello\n".utf8))
///     try await file.close()
///     let again = try await File.open("/tmp/greeting")
///     print(String(decoding: try await again.readAll(), as: UTF8.self))
/// }
/// ```
public final class File {
  /// The loop the file belongs to.
  public let loop: EventLoop
  /// The path it was opened with.
  public let path: String
  /// The descriptor, or -1 once closed.
  private(set) var fd: Int32
  /// Operations in flight (async waits and fiber calls); a close that comes
  /// meanwhile waits for them, so no operation meets a reused fd number.
  var inFlight = 0
  /// A descriptor `close()` left open for the operations in flight.
  private var pendingFD: Int32 = -1

  /// The most one request reads or writes: 1 MiB keeps the copy a
  /// page-cache hit makes on the loop's thread near 0.1 ms.
  static let maxChunk = 1 << 20

  init(fd: Int32, path: String, loop: EventLoop) {
    self.fd = fd
    self.path = path
    self.loop = loop
  }

  deinit {
    // No operation is in flight here: each holds the file until it ends.
    // close(2) of a regular file does not wait for the disk.
    if fd >= 0 { Glibc.close(fd) }
    if pendingFD >= 0 { Glibc.close(pendingFD) }
  }

  /// Opens the file at `path` on the loop running this task.
  ///
  /// - Parameters:
  ///   - path: Absolute, or relative to the working folder.
  ///   - mode: ``Mode/read`` (the default), ``Mode/write`` (created or
  ///     truncated), ``Mode/readWrite``, ``Mode/createNew``, or raw flags.
  ///   - permissions: For a file it creates, before the umask.
  /// - Throws: ``TinyAsyncError/system(errno:message:context:)`` with `ENOENT`,
  ///   `EACCES`, `EISDIR`, `EEXIST`, ... and `open <path>` as its context;
  ///   ``TinyAsyncError/cancelled``, ``TinyAsyncError/timedOut``.
  public static func open(
    _ path: String, mode: Mode = .read, permissions: UInt32 = 0o644
  ) async throws(TinyAsyncError) -> File {
    let loop = EventLoop.running(for: "File.open")
    loop.checkThread("File.open")
    let fd = try await FileWait(.open(flags: mode.flags, permissions: permissions), path: path, loop: loop)
      .wait().get()
    return File(fd: fd, path: path, loop: loop)
  }

  // MARK: Reading

  /// Reads up to `count` bytes at `offset`: fewer only at the end of the
  /// file, none past it.
  ///
  /// - Throws: ``TinyAsyncError/closed``; `EISDIR` for a folder; other
  ///   system errors with the path; ``TinyAsyncError/cancelled``,
  ///   ``TinyAsyncError/timedOut``.
  public func read(at offset: Int, count: Int) async throws(TinyAsyncError) -> [UInt8] {
    try begin("File.read(at:count:)", offset: offset, count: count)
    defer { end() }
    let buffer = UnsafeMutableRawPointer.allocate(byteCount: Swift.max(count, 1), alignment: 16)
    defer { buffer.deallocate() }
    var have = 0
    while have < count {
      let n = try await readChunk(into: buffer + have, count: count - have, at: offset + have)
      if n == 0 { break }
      have += n
    }
    return Array(UnsafeRawBufferPointer(start: buffer, count: have))
  }

  /// The whole file, from offset 0 to its end (a file that grows meanwhile
  /// is read to its new end), in 1 MiB requests.
  public func readAll() async throws(TinyAsyncError) -> [UInt8] {
    try begin("File.readAll()", offset: 0, count: 0)
    defer { end() }
    let size = try await FileWait(.stat(fd: fd), path: path, loop: loop).statWait()
    var capacity = Swift.max(Int(size.size) + 1, 4096)
    var buffer = UnsafeMutableRawPointer.allocate(byteCount: capacity, alignment: 16)
    defer { buffer.deallocate() }
    var have = 0
    while true {
      if have == capacity {
        let grown = UnsafeMutableRawPointer.allocate(byteCount: capacity * 2, alignment: 16)
        grown.copyMemory(from: buffer, byteCount: have)
        buffer.deallocate()
        buffer = grown
        capacity *= 2
      }
      let n = try await readChunk(into: buffer + have, count: capacity - have, at: have)
      if n == 0 { break }
      have += n
    }
    return Array(UnsafeRawBufferPointer(start: buffer, count: have))
  }

  /// One read request of at most ``maxChunk`` bytes into `buffer`, which
  /// stays the caller's: the wait returns only once C is done with it.
  private func readChunk(into buffer: UnsafeMutableRawPointer, count: Int, at offset: Int) async throws(TinyAsyncError) -> Int {
    guard fd >= 0 else { throw .closed }
    let chunk = Swift.min(count, Self.maxChunk)
    return Int(try await FileWait(.read(fd: fd, buffer, count: chunk, offset: UInt64(offset)), path: path, loop: loop)
      .wait().get())
  }

  // MARK: Writing

  /// Writes all of `bytes` at `offset` (partial writes are continued),
  /// growing the file as needed.
  ///
  /// - Throws: `ENOSPC`, `EBADF`-like ``TinyAsyncError/closed``, other
  ///   system errors with the path; ``TinyAsyncError/cancelled``,
  ///   ``TinyAsyncError/timedOut`` (how much was written is then unknown).
  public func write(_ bytes: some Collection<UInt8>, at offset: Int) async throws(TinyAsyncError) {
    try begin("File.write(_:at:)", offset: offset, count: 0)
    defer { end() }
    try await writeBytes(bytes, at: offset)
  }

  /// Makes the file hold exactly `bytes`: written from offset 0, then cut
  /// to their count (the cut runs on the work pool).
  public func writeAll(_ bytes: some Collection<UInt8>) async throws(TinyAsyncError) {
    try begin("File.writeAll(_:)", offset: 0, count: 0)
    defer { end() }
    let count = try await writeBytes(bytes, at: 0)
    let info = try await FileWait(.stat(fd: fd), path: path, loop: loop).statWait()
    if info.size > UInt64(count) {
      let fd = self.fd
      let rc: Int32
      do {
        rc = try await offload { Glibc.ftruncate(fd, off_t(count)) == 0 ? 0 : -Glibc.errno }
      } catch {
        throw error as? TinyAsyncError ?? .cancelled
      }
      if rc < 0 { throw TinyAsyncError.file(code: rc, path: path, "truncate") }
    }
  }

  /// Copies `bytes` into a buffer of ours (they need not be contiguous, and
  /// must not be read by C after the call) and writes them at `offset`.
  /// Returns the count.
  @discardableResult
  private func writeBytes(_ bytes: some Collection<UInt8>, at offset: Int) async throws(TinyAsyncError) -> Int {
    let total = bytes.count
    let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: Swift.max(total, 1), alignment: 16)
    defer { buffer.deallocate() }
    _ = buffer.initializeMemory(as: UInt8.self, from: bytes)
    var done = 0
    while done < total {
      guard fd >= 0 else { throw .closed }
      let chunk = Swift.min(total - done, Self.maxChunk)
      let n = try await FileWait(
        .write(fd: fd, UnsafeRawPointer(buffer.baseAddress! + done), count: chunk, offset: UInt64(offset + done)),
        path: path, loop: loop
      ).wait().get()
      guard n > 0 else { throw TinyAsyncError.file(code: -EIO, path: path, "write") }
      done += Int(n)
    }
    return total
  }

  // MARK: The rest

  /// Waits until what was written is on the disk (`fsync`; with
  /// `dataOnly`, `fdatasync`: the bytes and the size, not the times).
  public func sync(dataOnly: Bool = false) async throws(TinyAsyncError) {
    try begin("File.sync()", offset: 0, count: 0)
    defer { end() }
    _ = try await FileWait(.fsync(fd: fd, dataOnly: dataOnly), path: path, loop: loop).wait().get()
  }

  /// The file's size, allocation, type, permissions and modification time.
  public func stat() async throws(TinyAsyncError) -> FileInfo {
    try begin("File.stat()", offset: 0, count: 0)
    defer { end() }
    return FileInfo(try await FileWait(.stat(fd: fd), path: path, loop: loop).statWait())
  }

  /// Closes the file, waiting for the kernel's answer (on a network file
  /// system the last write's error may come here). Operations in flight
  /// from other tasks finish first, and the descriptor is closed when the
  /// last one ends; later ones throw ``TinyAsyncError/closed``. Closing
  /// again does nothing.
  public func close() async throws(TinyAsyncError) {
    loop.checkThread("File.close()")
    guard let fd = takeForClose() else { return }
    inFlight += 1
    defer { inFlight -= 1 }
    _ = try await FileWait(.close(fd: fd), path: path, loop: loop).wait().get()
  }

  /// Forgets the descriptor (later calls throw ``TinyAsyncError/closed``)
  /// and returns it for the caller to close now -- or `nil`: closed
  /// already, or operations are in flight and ``end()`` closes it after
  /// the last.
  func takeForClose() -> Int32? {
    guard fd >= 0 else { return nil }
    let fd = self.fd
    self.fd = -1
    if inFlight > 0 {
      pendingFD = fd
      return nil
    }
    return fd
  }

  /// `true` once `close()` was called.
  public var isClosed: Bool {
    loop.checkThread("File.isClosed")
    return fd < 0
  }

  /// The checks of every operation, then counts it in flight.
  func begin(_ operation: StaticString, offset: Int, count: Int) throws(TinyAsyncError) {
    loop.checkThread(operation)
    ensure(offset >= 0, "\(operation) needs offset >= 0, got \(offset)")
    ensure(count >= 0, "\(operation) needs count >= 0, got \(count)")
    guard fd >= 0 else { throw .closed }
    inFlight += 1
  }

  /// Ends an operation; the last one out does a close that waited for it.
  func end() {
    inFlight -= 1
    if inFlight == 0 && pendingFD >= 0 {
      Glibc.close(pendingFD)
      pendingFD = -1
    }
  }
}

@available(*, unavailable, message: "a File belongs to its loop's thread")
extension File: Sendable {}
