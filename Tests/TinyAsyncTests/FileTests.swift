import Glibc
import Testing
import TinyAsync

/// A fresh path under $TMPDIR (or /tmp), unique per test run.
private func tempPath(_ what: String) -> String {
  let dir = ProcessInfoLite.tmpdir
  let path = "\(dir)/tinyasync-test-\(what)-\(getpid())-\(UInt32.random(in: 0 ... .max))"
  unlink(path)
  return path
}

private enum ProcessInfoLite {
  static var tmpdir: String {
    if let t = getenv("TMPDIR"), t.pointee != 0 { return String(cString: t) }
    return "/tmp"
  }
}

/// Deterministic bytes (xorshift, eight per step: a debug build makes
/// 64 MiB in about a second), so a failure reproduces.
private func pattern(_ count: Int, seed: UInt64) -> [UInt8] {
  var bytes = [UInt8](repeating: 0, count: count)
  var s = seed | 1
  bytes.withUnsafeMutableBytes { raw in
    for i in stride(from: 0, to: count, by: 8) {
      s ^= s >> 12
      s ^= s << 25
      s ^= s >> 27
      var word = s &* 0x2545_F491_4F6C_DD1D
      withUnsafeBytes(of: &word) { w in
        for k in 0..<min(8, count - i) { raw[i + k] = w[k] }
      }
    }
  }
  return bytes
}

/// Byte-for-byte equality without a debug build's element loop.
private func same(_ a: [UInt8], _ b: ArraySlice<UInt8>) -> Bool {
  a.count == b.count
    && a.withUnsafeBytes { x in b.withUnsafeBytes { y in memcmp(x.baseAddress!, y.baseAddress!, a.count) == 0 } }
}

/// A file of `count` pattern bytes, written with plain syscalls, flushed and
/// (cold) dropped from the page cache, so reads go to the disk.
private func makeFile(_ path: String, count: Int, seed: UInt64, cold: Bool) -> [UInt8] {
  let bytes = pattern(count, seed: seed)
  let fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0o600)
  precondition(fd >= 0)
  _ = bytes.withUnsafeBytes { write(fd, $0.baseAddress!, count) }
  if cold {
    fsync(fd)
    posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED)
  }
  close(fd)
  return bytes
}

/// File: both backends (io_uring's requests; the work pool on epoll), the
/// async and the fiber forms. 64 MiB stands for the issue's 256 MiB (the
/// same paths, a quarter of CI's time and memory) but where the loop must
/// keep its timers during a 256 MiB read.
@Suite("File")
struct FileTests {
  static let backends: [EventLoop.Backend] = [.epoll, .ioUring]
  static let large = 64 << 20

  @Test(arguments: backends)
  func sizesAtRandomOffsetsEveryByteChecked(_ backend: EventLoop.Backend) throws {
    let loop = try makeLoop(backend)
    let path = tempPath("sizes")
    defer { unlink(path) }
    try loop.runUntilComplete { () async throws in
      let file = try await File.open(path, mode: .readWrite)
      var model = [UInt8](repeating: 0, count: 3 << 20)
      var size = 0
      var rng = SystemRandomNumberGenerator()
      for (k, count) in [0, 1, 1 << 20, 1, 0, 1 << 20].enumerated() {
        let offset = Int.random(in: 0..<(2 << 20), using: &rng)
        let bytes = pattern(count, seed: UInt64(k + 1))
        try await file.write(bytes, at: offset)
        model.replaceSubrange(offset..<offset + count, with: bytes)
        if count > 0 { size = max(size, offset + count) }
        let back = try await file.read(at: offset, count: count)
        #expect(same(back, bytes[...]))
        #expect(try await file.stat().size == size)
      }
      #expect(same(try await file.readAll(), model[..<size]))
      #expect(try await file.read(at: size, count: 10).isEmpty)
      #expect(try await file.read(at: size - 3, count: 10).count == 3)
      try await file.sync()
      try await file.sync(dataOnly: true)
      let info = try await file.stat()
      #expect(info.isRegularFile && !info.isDirectory)
      #expect(info.permissions & 0o600 == 0o600)
      #expect(info.modificationTime > .seconds(1_600_000_000))
      try await file.close()
      try await file.close()  // again: nothing
      #expect(file.isClosed)
      await #expect(throws: TinyAsyncError.closed) { _ = try await file.read(at: 0, count: 1) }
    }
  }

  @Test(arguments: backends)
  func writeAllReplacesAndReadAllReadsALargeFile(_ backend: EventLoop.Backend) throws {
    let loop = try makeLoop(backend)
    let path = tempPath("large")
    defer { unlink(path) }
    try loop.runUntilComplete { () async throws in
      let data = pattern(Self.large, seed: 9)
      let file = try await File.open(path, mode: .write)
      try await file.writeAll(data)
      try await file.close()
      let again = try await File.open(path, mode: .readWrite)
      #expect(same(try await again.readAll(), data[...]))
      for _ in 0..<50 {
        let offset = Int.random(in: 0..<Self.large)
        let count = Int.random(in: 1...(1 << 20))
        let back = try await again.read(at: offset, count: count)
        #expect(same(back, data[offset..<min(offset + count, Self.large)]))
      }
      // writeAll of something shorter: the file is exactly that now.
      try await again.writeAll(Array("short".utf8))
      #expect(try await again.stat().size == 5)
      #expect(try await again.readAll() == Array("short".utf8))
    }
  }

  @Test(arguments: backends)
  func aFileWithHolesReadsAsZeros(_ backend: EventLoop.Backend) throws {
    let loop = try makeLoop(backend)
    let path = tempPath("holes")
    defer { unlink(path) }
    try loop.runUntilComplete { () async throws in
      let file = try await File.open(path, mode: .createNew)
      try await file.write([1], at: 0)
      try await file.write([2], at: 4 << 20)
      try await file.write([3], at: 16 << 20)
      let info = try await file.stat()
      #expect(info.size == (16 << 20) + 1)
      #expect(info.allocatedBytes < 1 << 20)  // holes take no blocks
      var expected = [UInt8](repeating: 0, count: (16 << 20) + 1)
      expected[0] = 1
      expected[4 << 20] = 2
      expected[16 << 20] = 3
      #expect(same(try await file.readAll(), expected[...]))
    }
  }

  @Test(arguments: backends)
  func errorsNameTheirCaseAndThePath(_ backend: EventLoop.Backend) throws {
    let loop = try makeLoop(backend)
    let dir = tempPath("dir")
    #expect(mkdir(dir, 0o700) == 0)
    defer { rmdir(dir) }
    try loop.runUntilComplete { () async throws in
      let missing = "\(dir)/missing"
      do {
        _ = try await File.open(missing)
        Issue.record("opened a missing file")
      } catch let error as TinyAsyncError {
        #expect(error.errno == ENOENT)
        #expect("\(error)".contains("open \(missing)"))
        #expect(error.message.contains("No such file"))
      }
      do {
        _ = try await File.open(dir, mode: .write)
        Issue.record("opened a folder for writing")
      } catch let error as TinyAsyncError {
        #expect(error.errno == EISDIR)
        #expect("\(error)".contains("open \(dir)"))
      }
      let folder = try await File.open(dir)  // reading a folder: EISDIR
      #expect(try await folder.stat().isDirectory)
      await #expect { _ = try await folder.read(at: 0, count: 1) } throws: { error in
        (error as? TinyAsyncError)?.errno == EISDIR
      }
      _ = try await File.open("\(dir)/once", mode: .createNew)
      await #expect { _ = try await File.open("\(dir)/once", mode: .createNew) } throws: { error in
        (error as? TinyAsyncError)?.errno == EEXIST
      }
      unlink("\(dir)/once")
    }
  }

  @Test(.disabled(if: geteuid() == 0, "SKIP: running as root, permissions do not refuse root (EISDIR and ENOENT are checked)"),
        arguments: backends)
  func permissionDenied(_ backend: EventLoop.Backend) throws {
    let loop = try makeLoop(backend)
    let path = tempPath("eacces")
    close(open(path, O_WRONLY | O_CREAT, 0))
    defer { unlink(path) }
    try loop.runUntilComplete { () async throws in
      await #expect { _ = try await File.open(path) } throws: { error in
        (error as? TinyAsyncError)?.errno == EACCES && (error as? TinyAsyncError)?.description.contains("open \(path)") == true
      }
    }
  }

  /// What `timersKeepFiringWhileALargeFileIsRead` reads: a cold 64 MiB
  /// file (from the disk), and the issue's 256 MiB from the page cache
  /// (where on io_uring the copy is done inside the submitting call: one
  /// request for the whole file would stall the loop for all of it).
  struct LargeRead: Sendable, CustomTestStringConvertible {
    let size: Int
    let cold: Bool
    var testDescription: String { "\(size >> 20) MiB, \(cold ? "cold" : "cached")" }
  }
  static let largeReads = [LargeRead(size: large, cold: true), LargeRead(size: 256 << 20, cold: false)]

  /// The loop is never blocked: a 2 ms timer keeps ticking while a large
  /// file is read -- through the pool on epoll. Its median lateness
  /// stays within a few ms: 20 ms is the bound, since other builds share
  /// this 2-core machine (4 and 9 ms were seen in a loaded CI run, where a
  /// 3 ms bound failed); a read on the loop's thread would leave a tick or
  /// two in all, each late by the whole read.
  @Test(arguments: backends, largeReads)
  func timersKeepFiringWhileALargeFileIsRead(_ backend: EventLoop.Backend, _ read: LargeRead) throws {
    let loop = try makeLoop(backend)
    let path = tempPath("ticking")
    defer { unlink(path) }
    let data = makeFile(path, count: read.size, seed: 4, cold: read.cold)
    let (lates, took) = try loop.runUntilComplete { () async throws -> ([Duration], Duration) in
      let clock = ContinuousClock()
      var stop = false
      var lates: [Duration] = []
      let ticker = loop.spawn { () async throws in
        while !stop {
          let due = clock.now + .milliseconds(2)
          try await sleep(for: .milliseconds(2))
          lates.append(clock.now - due)
        }
      }
      try await sleep(for: .milliseconds(5))
      lates.removeAll()
      let start = clock.now
      let file = try await File.open(path)
      let back = try await file.readAll()
      let took = clock.now - start
      stop = true
      try await ticker.value
      #expect(same(back, data[...]))
      return (lates, took)
    }
    let sorted = lates.sorted()
    print("read \(read.testDescription) in \(took); \(sorted.count) ticks, median late \(sorted[sorted.count / 2]), worst \(sorted.last!)")
    #expect(sorted[sorted.count / 2] < .milliseconds(20))
    // It kept ticking: a tick per 40 ms at least. (Not per 10: in a debug
    // ASan build readAll's final 64 MiB copy into the array, on the loop's
    // thread, takes a few hundred ms by itself, 256 MiB's four times that;
    // a read that blocked the loop would leave one or two ticks in all.)
    #expect(sorted.count >= Int(took / .milliseconds(40)))
  }

  /// A task reading a cold 64 MiB file is cancelled part-way: it throws
  /// .cancelled (or, had the read finished first, returns every byte), the
  /// loop goes on, and the file reads again afterwards.
  @Test(arguments: backends)
  func cancelInTheMiddleOfALargeRead(_ backend: EventLoop.Backend) throws {
    let loop = try makeLoop(backend)
    let path = tempPath("cancel")
    defer { unlink(path) }
    let data = makeFile(path, count: Self.large, seed: 5, cold: true)
    try loop.runUntilComplete { () async throws in
      let file = try await File.open(path)
      let reader = loop.spawn { () async throws(TinyAsyncError) -> [UInt8] in
        try await file.read(at: 0, count: Self.large)
      }
      try await sleep(for: .milliseconds(2))
      reader.cancel()
      do {
        let got = try await reader.value
        #expect(same(got, data[...]))
      } catch {
        #expect(error as? TinyAsyncError == .cancelled)
      }
      // In a timeout scope too; then the file works as before.
      do {
        _ = try await withTimeout(.milliseconds(1)) { try await file.read(at: 0, count: Self.large) }
      } catch {
        #expect(error as? TinyAsyncError == .timedOut)
      }
      #expect(same(try await file.read(at: 100, count: 4096), data[100..<4196]))
    }
  }

  /// The fiber forms, on both stacks.
  @Test(arguments: backends)
  func fiberFormsOnBothStacks(_ backend: EventLoop.Backend) throws {
    let loop = try makeLoop(backend)
    for stack in [FiberStack.private, .shared] {
      let path = tempPath("fiber")
      defer { unlink(path) }
      try loop.runFiberUntilComplete(on: stack) {
        let data = pattern(3 << 20, seed: 6)
        let file = try File.open(path, mode: .readWrite)
        try file.write(data, at: 10)
        #expect(try file.stat().size == data.count + 10)
        #expect(same(try file.read(at: 10, count: data.count), data[...]))
        #expect(try file.read(at: 0, count: 10) == [UInt8](repeating: 0, count: 10))
        try file.sync()
        try file.writeAll(data)
        #expect(same(try file.readAll(), data[...]))
        #expect(throws: TinyAsyncError.self) { _ = try File.open(path + "/nope") }
        do {
          _ = try File.open(path + ".missing")
        } catch let error as TinyAsyncError {
          #expect(error.errno == ENOENT && "\(error)".contains("open \(path).missing"))
        }
        try file.close()
        #expect(throws: TinyAsyncError.closed) { _ = try file.read(at: 0, count: 1) }
      }
    }
  }

  /// A file streamed into a connection, on both fronts.
  @Test(arguments: backends)
  func sendFileIntoAConnection(_ backend: EventLoop.Backend) throws {
    let loop = try makeLoop(backend)
    let path = tempPath("send")
    defer { unlink(path) }
    let data = makeFile(path, count: (3 << 20) + 7, seed: 8, cold: false)
    try loop.runUntilComplete { () async throws in
      let listener = try TCPListener()
      let receiver = loop.spawn { () async throws -> [UInt8] in
        let connection = try await listener.accept()
        var got: [UInt8] = []
        while true {
          let chunk = try await connection.read(max: 1 << 20)
          if chunk.isEmpty { return got }
          got += chunk
        }
      }
      let connection = try await TCPConnection.connect(host: "127.0.0.1", port: listener.port)
      let file = try await File.open(path)
      #expect(try await connection.send(file: file, offset: 5) == data.count - 5)
      #expect(try await connection.send(file: file, offset: 100, count: 10) == 10)
      #expect(try await connection.send(file: file, offset: data.count, count: 10) == 0)
      try connection.shutdown()
      let got = try await receiver.value
      #expect(same(got, data[5...] + data[100..<110]))
    }
    try loop.runFiberUntilComplete {
      let listener = try TCPListener()
      let receiver = loop.spawnFiber { () throws -> [UInt8] in
        let connection = try listener.accept()
        var got: [UInt8] = []
        while true {
          let chunk = try connection.read(max: 1 << 20)
          if chunk.isEmpty { return got }
          got += chunk
        }
      }
      let connection = try TCPConnection.connect(host: "127.0.0.1", port: listener.port)
      let file = try File.open(path)
      #expect(try connection.send(file: file, offset: 5) == data.count - 5)
      #expect(try connection.send(file: file, offset: 100, count: 10) == 10)
      try connection.shutdown()
      let got = try receiver.get()
      #expect(same(got, data[5...] + data[100..<110]))
    }
  }

  /// A File used off its loop's thread stops with a message naming the call.
  @Test func usingAFileFromADetachedTaskStops() async {
    let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
      try EventLoop.run {
        let file = try await File.open("/proc/self/stat")
        let box = LoopThreadBox(file)
        await Task.detached { _ = try? await box.value.read(at: 0, count: 1) }.value
      }
    }
    let text = String(decoding: result?.standardErrorContent ?? [], as: UTF8.self)
    #expect(text.contains("File.read(at:count:) was called on a thread that is not its loop's"))
  }
}
