import CFdPeer
import Glibc
import Testing
import TinyAsync

/// A non-blocking pipe: (read end, write end).
private func makePipe() -> (Int32, Int32) {
  var fds: [Int32] = [-1, -1]
  let rc = cfdpeer_pipe(&fds)
  precondition(rc == 0, "pipe2: \(rc)")
  return (fds[0], fds[1])
}

/// Fills a non-blocking pipe (or socket) until a write would block.
private func fill(_ fd: Int32) -> Int {
  let chunk = [UInt8](repeating: 7, count: 65536)
  var total = 0
  while true {
    let n = write(fd, chunk, chunk.count)
    if n <= 0 { return total }
    total += n
  }
}

/// Reads what is there (up to 64 KiB) without waiting.
private func drain(_ fd: Int32) -> [UInt8] {
  var buffer = [UInt8](repeating: 0, count: 65536)
  let n = read(fd, &buffer, buffer.count)
  return n > 0 ? Array(buffer.prefix(n)) : []
}

/// FileDescriptorWatcher: waits on a descriptor the caller owns, on both
/// fronts and both backends: a pipe, and a socket owned by C code
/// (`CFdPeer`, a stand-in for libpq or libcurl) against a TCPListener.
@Suite("FileDescriptorWatcher")
struct FileDescriptorWatcherTests {
  static let backends: [EventLoop.Backend] = [.epoll, .ioUring]

  // MARK: A pipe, async

  @Test(arguments: backends)
  func readableAfterAWriteFromAnotherTask(_ backend: EventLoop.Backend) throws {
    let loop = try makeLoop(backend)
    let (r, w) = makePipe()
    defer { close(r); close(w) }
    let got = try loop.runUntilComplete { () async throws -> [UInt8] in
      let reader = try FileDescriptorWatcher(fd: r)
      defer { reader.close() }
      let waiting = loop.spawn { () async throws -> [UInt8] in
        try await reader.readable()
        return drain(r)  // the read then works
      }
      for _ in 0..<3 { try await sleep(for: .zero) }
      #expect(!waiting.isDone)  // nothing to read yet: parked
      loop.spawn { _ = write(w, "hi", 2) }
      return try await waiting.value
    }
    #expect(got == Array("hi".utf8))
  }

  @Test(arguments: backends)
  func writableAtOnceThenOnlyOnceThereIsRoom(_ backend: EventLoop.Backend) throws {
    let loop = try makeLoop(backend, clock: .manual)
    let (r, w) = makePipe()
    defer { close(r); close(w) }
    try loop.runUntilComplete { () async throws in
      let writer = try FileDescriptorWatcher(fd: w)
      defer { writer.close() }
      let start = loop.now
      try await writer.writable()  // an empty pipe has room
      #expect(loop.now == start)
      #expect(fill(w) > 0)
      let waiting = loop.spawn { try await writer.writable() }
      for _ in 0..<3 { try await sleep(for: .zero) }
      #expect(!waiting.isDone)  // full: parked
      while !drain(r).isEmpty {}
      try await waiting.value
      #expect(write(w, "x", 1) == 1)
    }
  }

  // MARK: A socket owned by C code

  /// An echo server on `listener` for one connection, in a task.
  private static func serveEcho(_ listener: TCPListener, on loop: EventLoop) {
    loop.spawn {
      let connection = try await listener.accept()
      defer { connection.close() }
      while true {
        let bytes = try await connection.read(max: 65536)
        if bytes.isEmpty { return }
        try await connection.write(bytes)
      }
    }
  }

  /// Sends and receives 256 KiB through the C library's socket at once, a
  /// writer task waiting on writable() whenever the library says EAGAIN
  /// and a reader task on readable(): one waiter per direction, together.
  @Test(arguments: backends)
  func drivesASocketOwnedByCCode(_ backend: EventLoop.Backend) throws {
    let loop = try makeLoop(backend)
    let total = 256 * 1024
    let sent = (0..<total).map { UInt8(truncatingIfNeeded: $0 &* 31) }
    let (received, writableWaits, readableWaits) = try loop.runUntilComplete {
      () async throws -> ([UInt8], Int, Int) in
      let listener = try TCPListener(host: "127.0.0.1", port: 0)
      defer { listener.close() }
      Self.serveEcho(listener, on: loop)
      let fd = cfdpeer_connect(Int32(listener.port))
      #expect(fd >= 0)
      #expect(cfdpeer_set_send_buffer(fd, 4096) == 0)  // fills at once
      let watcher = try FileDescriptorWatcher(fd: fd)
      defer {
        watcher.close()  // first the watcher, then the library's close
        _ = cfdpeer_close(fd)
      }
      try await watcher.writable()  // the connect finished
      #expect(cfdpeer_connect_result(fd) == 0)
      var writableWaits = 0
      let writer = loop.spawn { () async throws in
        var offset = 0
        while offset < total {
          let n = sent[offset...].withUnsafeBytes { cfdpeer_send(fd, $0.baseAddress, $0.count) }
          if n == -Int(EAGAIN) {
            writableWaits += 1
            try await watcher.writable()
            continue
          }
          #expect(n > 0)
          if n <= 0 { return }
          offset += n
        }
      }
      var received: [UInt8] = []
      var readableWaits = 0
      var buffer = [UInt8](repeating: 0, count: 65536)
      while received.count < total {
        let n = buffer.withUnsafeMutableBytes { cfdpeer_recv(fd, $0.baseAddress, $0.count) }
        if n == -Int(EAGAIN) {
          readableWaits += 1
          try await watcher.readable()
          continue
        }
        #expect(n > 0)
        if n <= 0 { break }
        received += buffer.prefix(n)
      }
      try await writer.value
      return (received, writableWaits, readableWaits)
    }
    #expect(received == sent)
    #expect(writableWaits > 0)  // the 4 KiB buffer did fill: writable() waited
    #expect(readableWaits > 0)
  }

  // MARK: Interruptions

  @Test(arguments: backends)
  func cancelledWhileWaiting(_ backend: EventLoop.Backend) throws {
    let loop = try makeLoop(backend)
    let (r, w) = makePipe()
    defer { close(r); close(w) }
    let error = try loop.runUntilComplete { () async throws -> TinyAsyncError? in
      let reader = try FileDescriptorWatcher(fd: r)
      defer { reader.close() }
      let waiting = loop.spawn { try await reader.readable() }
      for _ in 0..<2 { try await sleep(for: .zero) }
      waiting.cancel()
      var error: TinyAsyncError?
      do { try await waiting.value } catch let e as TinyAsyncError { error = e }
      // Its watch went with it: the next wait is not a second waiter.
      #expect(write(w, "x", 1) == 1)
      try await reader.readable()
      return error
    }
    #expect(error == .cancelled)
  }

  @Test(arguments: backends)
  func timesOutInsideWithTimeout(_ backend: EventLoop.Backend) throws {
    let loop = try makeLoop(backend, clock: .manual)
    let (r, w) = makePipe()
    defer { close(r); close(w) }
    try loop.runUntilComplete { () async throws in
      let reader = try FileDescriptorWatcher(fd: r)
      defer { reader.close() }
      let start = loop.now
      await #expect(throws: TinyAsyncError.timedOut) {
        try await withTimeout(.milliseconds(5)) { try await reader.readable() }
      }
      #expect(loop.now - start == .milliseconds(5))
      #expect(write(w, "x", 1) == 1)
      try await reader.readable()
    }
  }

  /// In a shield, the task's cancellation waits: the wait ends when the
  /// pipe is readable, and the next wait after the shield throws it.
  @Test(arguments: backends)
  func aShieldedWaitIgnoresTheCancellation(_ backend: EventLoop.Backend) throws {
    let loop = try makeLoop(backend)
    let (r, w) = makePipe()
    defer { close(r); close(w) }
    let (inShield, after) = try loop.runUntilComplete { () async throws -> (Bool, TinyAsyncError?) in
      let reader = try FileDescriptorWatcher(fd: r)
      defer { reader.close() }
      var inShield = false
      let waiting = loop.spawn { () async throws in
        try await withShield {
          try await reader.readable()
          inShield = true
        }
        try await sleep(for: .seconds(10))
      }
      for _ in 0..<2 { try await sleep(for: .zero) }
      waiting.cancel()
      for _ in 0..<3 { try await sleep(for: .zero) }
      #expect(!waiting.isDone)  // still waiting on the pipe
      #expect(write(w, "x", 1) == 1)
      var after: TinyAsyncError?
      do { try await waiting.value } catch let e as TinyAsyncError { after = e }
      return (inShield, after)
    }
    #expect(inShield)
    #expect(after == .cancelled)
  }

  // MARK: close()

  @Test(arguments: backends)
  func closeEndsAWaitInEitherDirection(_ backend: EventLoop.Backend) throws {
    let loop = try makeLoop(backend)
    let (r, w) = makePipe()
    defer { close(r); close(w) }
    try loop.runUntilComplete { () async throws in
      let reader = try FileDescriptorWatcher(fd: r)
      let writer = try FileDescriptorWatcher(fd: w)
      #expect(fill(w) > 0)
      let reading = loop.spawn { try await reader.readable() }
      let writing = loop.spawn { try await writer.writable() }
      for _ in 0..<2 { try await sleep(for: .zero) }
      reader.close()
      writer.close()
      await #expect(throws: TinyAsyncError.closed) { try await reading.value }
      await #expect(throws: TinyAsyncError.closed) { try await writing.value }
      // Later waits too; closing again does nothing.
      await #expect(throws: TinyAsyncError.closed) { try await reader.readable() }
      await #expect(throws: TinyAsyncError.closed) { try await writer.writable() }
      reader.close()
      #expect(reader.isClosed)
      // The descriptors are still the caller's, and open.
      #expect(!drain(r).isEmpty)
      #expect(write(w, "x", 1) == 1)
    }
  }

  /// The descriptor is closed underneath a wait: the wait does not end by
  /// itself on either backend, close() ends it, nothing crashes, and the
  /// fd number, when it comes back, can be watched afresh.
  @Test(arguments: backends)
  func closeEndsAWaitOnADescriptorClosedUnderneath(_ backend: EventLoop.Backend) throws {
    let loop = try makeLoop(backend)
    try loop.runUntilComplete { () async throws in
      let (r, w) = makePipe()
      defer { close(w) }
      let reader = try FileDescriptorWatcher(fd: r)
      let waiting = loop.spawn { try await reader.readable() }
      for _ in 0..<2 { try await sleep(for: .zero) }
      close(r)  // by someone else, before the watcher's close()
      try await sleep(for: .milliseconds(20))
      #expect(!waiting.isDone)  // the wait goes on
      reader.close()
      await #expect(throws: TinyAsyncError.closed) { try await waiting.value }

      // The same number again, for a new pipe: a new watcher works on it.
      let (r2, w2) = makePipe()
      defer { close(r2); close(w2) }
      let again = try FileDescriptorWatcher(fd: r2)
      defer { again.close() }
      #expect(write(w2, "y", 1) == 1)
      try await again.readable()
      #expect(drain(r2) == Array("y".utf8))
    }
  }

  // MARK: Errors

  @Test(arguments: backends)
  func badDescriptorsAreRefused(_ backend: EventLoop.Backend) throws {
    let loop = try makeLoop(backend)
    try loop.runUntilComplete { () async throws in
      #expect(throws: TinyAsyncError.closed) { try FileDescriptorWatcher(fd: -1) }
      // A number no descriptor can have: the hard open-file limit (other
      // tests raise the soft one). A pipe closed here would do only until
      // a test running beside this one opens a descriptor and the kernel
      // hands it that number.
      var limit = rlimit()
      #expect(getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0)
      let neverOpen = Int32(clamping: limit.rlim_max)
      #expect(fcntl(neverOpen, F_GETFD) == -1 && errno == EBADF)
      #expect(throws: TinyAsyncError.closed) { try FileDescriptorWatcher(fd: neverOpen) }
      let file = tmpfile()!
      defer { fclose(file) }
      do {
        _ = try FileDescriptorWatcher(fd: fileno(file))
        Issue.record("a regular file was accepted")
      } catch let error as TinyAsyncError {
        #expect(error.errno == EPERM)
      }

      // Waiting in a direction something else on the loop waits in: EEXIST.
      let (r2, w2) = makePipe()
      defer { close(r2); close(w2) }
      let first = try FileDescriptorWatcher(fd: r2)
      let second = try FileDescriptorWatcher(fd: r2)
      defer { first.close(); second.close() }
      let waiting = loop.spawn { try await first.readable() }
      try await sleep(for: .zero)
      do {
        try await second.readable()
        Issue.record("a second watch of the same direction was accepted")
      } catch let error as TinyAsyncError {
        #expect(error.errno == EEXIST)
      }
      #expect(write(w2, "x", 1) == 1)
      try await waiting.value
    }
  }

  @Test func twoWaitersInOneDirectionStop() async {
    let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
      var fds: [Int32] = [-1, -1]
      _ = cfdpeer_pipe(&fds)
      try EventLoop.run {
        let watcher = try FileDescriptorWatcher(fd: fds[0])
        EventLoop.current!.spawn { try await watcher.readable() }
        try await sleep(for: .zero)
        try await watcher.readable()
      }
    }
    let text = String(decoding: result?.standardErrorContent ?? [], as: UTF8.self)
    #expect(text.contains("FileDescriptorWatcher.readable(): another task or fiber is already waiting"))
  }

  // MARK: Fibers

  @Test(arguments: backends)
  func fiberFormsOnAPipe(_ backend: EventLoop.Backend) throws {
    let loop = try makeLoop(backend, clock: .manual)
    let (r, w) = makePipe()
    defer { close(r); close(w) }
    try loop.runFiberUntilComplete {
      let reader = try FileDescriptorWatcher(fd: r)
      let writer = try FileDescriptorWatcher(fd: w)
      defer { reader.close(); writer.close() }
      try writer.writable()  // at once

      // Readable after a write from another fiber; the read then works.
      let waiting = loop.spawnFiber { () throws -> [UInt8] in
        try reader.readable()
        return drain(r)
      }
      for _ in 0..<3 { try sleep(for: .zero) }
      #expect(!waiting.isDone)
      loop.spawnFiber { _ = write(w, "hi", 2) }
      #expect(try waiting.get() == Array("hi".utf8))

      // Cancelled while waiting.
      let cancelled = loop.spawnFiber { try reader.readable() }
      for _ in 0..<2 { try sleep(for: .zero) }
      cancelled.cancel()
      #expect(throws: TinyAsyncError.cancelled) { try cancelled.get() }

      // Timed out in a deadline scope, exactly on the manual clock.
      let start = loop.now
      #expect(throws: TinyAsyncError.timedOut) {
        try withTimeout(.milliseconds(5)) { try reader.readable() }
      }
      #expect(loop.now - start == .milliseconds(5))

      // Closed while waiting, in both directions; later waits throw too.
      #expect(fill(w) > 0)
      let reading = loop.spawnFiber { try reader.readable() }
      let writing = loop.spawnFiber { try writer.writable() }
      for _ in 0..<2 { try sleep(for: .zero) }
      #expect(!reading.isDone && !writing.isDone)
      reader.close()
      writer.close()
      #expect(throws: TinyAsyncError.closed) { try reading.get() }
      #expect(throws: TinyAsyncError.closed) { try writing.get() }
      #expect(throws: TinyAsyncError.closed) { try reader.readable() }
    }
  }

  @Test(arguments: backends)
  func aFiberDrivesASocketOwnedByCCode(_ backend: EventLoop.Backend) throws {
    let loop = try makeLoop(backend)
    let reply = try loop.runFiberUntilComplete { () throws -> [UInt8] in
      let listener = try TCPListener(host: "127.0.0.1", port: 0)
      defer { listener.close() }
      loop.spawnFiber {
        let connection = try listener.accept()
        defer { connection.close() }
        let line = try connection.read(until: UInt8(ascii: "\n"))
        try connection.write(Array("echo: ".utf8) + line)
      }
      let fd = cfdpeer_connect(Int32(listener.port))
      #expect(fd >= 0)
      let watcher = try FileDescriptorWatcher(fd: fd)
      defer {
        watcher.close()
        _ = cfdpeer_close(fd)
      }
      try watcher.writable()
      #expect(cfdpeer_connect_result(fd) == 0)
      let hello = Array("hello\n".utf8)
      #expect(hello.withUnsafeBytes { cfdpeer_send(fd, $0.baseAddress, $0.count) } == hello.count)
      var reply: [UInt8] = []
      var buffer = [UInt8](repeating: 0, count: 256)
      while reply.last != UInt8(ascii: "\n") {
        let n = buffer.withUnsafeMutableBytes { cfdpeer_recv(fd, $0.baseAddress, $0.count) }
        if n == -Int(EAGAIN) {
          try watcher.readable()
          continue
        }
        #expect(n > 0)
        if n <= 0 { break }
        reply += buffer.prefix(n)
      }
      return reply
    }
    #expect(reply == Array("echo: hello\n".utf8))
  }
}
