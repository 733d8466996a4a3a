import Glibc
import Testing
import TinyAsync

/// Serves an echo, in fibers, on every connection `listener` accepts until
/// it closes.
func serveEchoInFibers(_ listener: TCPListener) {
  let loop = listener.loop
  loop.spawnFiber(name: "accept") {
    while true {
      let connection: TCPConnection
      do {
        connection = try listener.accept()
      } catch TinyAsyncError.closed {
        return
      }
      loop.spawnFiber(name: "echo") {
        defer { connection.close() }
        while true {
          let data = try connection.read(max: 65536)
          if data.isEmpty { return }
          try connection.write(data)
        }
      }
    }
  }
}

@Suite("TCP: the fiber forms")
struct TCPFiberTests {
  static let backends: [EventLoop.Backend] = [.epoll, .ioUring]

  @Test(arguments: backends)
  func echoRoundTripsInFibers(_ backend: EventLoop.Backend) throws {
    let loop = try makeLoop(backend)
    try loop.runFiberUntilComplete {
      let listener = try TCPListener(port: 0)
      serveEchoInFibers(listener)
      let connection = try TCPConnection.connect(host: "127.0.0.1", port: listener.port)
      for i in 0..<100 {
        let message = bytes("message \(i)\n")
        try connection.write(message)
        #expect(try connection.read(until: UInt8(ascii: "\n")) == message)
      }
      let big = [UInt8]((0..<200_000).map { UInt8(truncatingIfNeeded: $0 &* 7) })
      try connection.write(big)
      var echoed: [UInt8] = []
      while echoed.count < big.count {
        #expect(try connection.read(into: &echoed, max: 10_000) > 0)
      }
      #expect(echoed == big)
      // By name, too.
      let byName = try TCPConnection.connect(host: "localhost", port: listener.port)
      try byName.write("hi")
      #expect(try byName.read() == bytes("hi"))
      listener.close()
    }
  }

  /// Server and clients all in fibers on `stack`; on the shared one, the
  /// small strings written are on the shared stack while they are sent.
  @Test(arguments: backends, FiberTests.stacks)
  func echoBetweenFibersOnEitherStack(_ backend: EventLoop.Backend, _ stack: FiberStack) throws {
    let loop = try makeLoop(backend)
    try loop.runFiberUntilComplete(on: stack) {
      let listener = try TCPListener(host: "127.0.0.1", port: 0)
      // The server: an accepting fiber and one echo fiber per connection.
      loop.spawnFiber(name: "accept", stack: stack) {
        while true {
          let connection: TCPConnection
          do {
            connection = try listener.accept()
          } catch TinyAsyncError.closed {
            return
          }
          loop.spawnFiber(name: "echo", stack: stack) {
            defer { connection.close() }
            var buffer: [UInt8] = []
            while true {
              buffer.removeAll(keepingCapacity: true)
              if try connection.read(into: &buffer, max: 4096) == 0 { return }
              try connection.write(buffer)
            }
          }
        }
      }
      let big = [UInt8]((0..<300_000).map { UInt8(truncatingIfNeeded: $0 &* 7) })
      let clients = (0..<4).map { c in
        loop.spawnFiber(stack: stack) { () throws -> Int in
          let connection = try TCPConnection.connect(host: "127.0.0.1", port: listener.port)
          defer { connection.close() }
          for i in 0..<50 {
            let line = "c\(c) \(i)\n"
            try connection.write(line)
            #expect(try connection.read(until: UInt8(ascii: "\n")) == bytes(line))
          }
          try connection.write(big)
          var echoed: [UInt8] = []
          while echoed.count < big.count {
            #expect(try connection.read(into: &echoed, max: 10_000) > 0)
          }
          #expect(echoed == big)
          return c
        }
      }
      #expect(try clients.map { try $0.get() } == [0, 1, 2, 3])
      listener.close()
    }
  }

  @Test(arguments: backends)
  func aFiberServerAndAsyncClientsShareALoop(_ backend: EventLoop.Backend) throws {
    let loop = try makeLoop(backend)
    try loop.runUntilComplete {
      let listener = try TCPListener(port: 0)
      serveEchoInFibers(listener)
      let connection = try await TCPConnection.connect(host: "127.0.0.1", port: listener.port)
      try await connection.write("async to fiber\n")
      #expect(try await connection.read(until: UInt8(ascii: "\n")) == bytes("async to fiber\n"))
      listener.close()
    }
  }

  @Test(arguments: backends)
  func readUntilInAFiber(_ backend: EventLoop.Backend) throws {
    let loop = try makeLoop(backend)
    try loop.runFiberUntilComplete {
      let listener = try TCPListener(port: 0)
      let client = try TCPConnection.connect(host: "127.0.0.1", port: listener.port)
      let server = try listener.accept()
      loop.spawnFiber {
        for piece in ["hel", "lo\r", "\nwor", "ld\r", "\n", "tail\r\nmore"] {
          try server.write(piece)
          try sleep(for: .milliseconds(5))
        }
        try server.shutdown()
      }
      let crlf = bytes("\r\n")
      #expect(try client.read(until: crlf, max: 100) == bytes("hello\r\n"))
      #expect(try client.read(until: crlf, max: 100) == bytes("world\r\n"))
      #expect(try client.read(until: crlf, max: 100) == bytes("tail\r\n"))
      #expect(try client.read(until: crlf, max: 100) == bytes("more"))
      #expect(try client.read(until: crlf, max: 100) == [])

      // Oversize: thrown, and nothing consumed.
      let client2 = try TCPConnection.connect(host: "127.0.0.1", port: listener.port)
      let server2 = try listener.accept()
      try server2.write(String(repeating: "x", count: 100) + "\n")
      #expect(throws: TinyAsyncError.delimiterNotFound) {
        try client2.read(until: UInt8(ascii: "\n"), max: 50)
      }
      #expect(try client2.read(until: UInt8(ascii: "\n"), max: 101).count == 101)
    }
  }

  @Test(arguments: backends)
  func largeWriteFromAFiberToASlowReader(_ backend: EventLoop.Backend) throws {
    let loop = try makeLoop(backend)
    let size = 8 << 20
    let pattern = (0..<size).map { UInt8(truncatingIfNeeded: $0 % 251) }
    try loop.runFiberUntilComplete {
      let listener = try TCPListener(port: 0)
      let client = try TCPConnection.connect(host: "127.0.0.1", port: listener.port)
      let server = try listener.accept()
      let writer = loop.spawnFiber {
        try server.write(pattern)
        try server.shutdown()
      }
      var received: [UInt8] = []
      received.reserveCapacity(size)
      var reads = 0
      while try client.read(into: &received, max: 100_000) > 0 {
        reads += 1
        if reads % 8 == 0 { try sleep(for: .milliseconds(1)) }
      }
      try writer.get()
      #expect(received == pattern)
    }
  }

  @Test(arguments: backends)
  func errorsInAFiber(_ backend: EventLoop.Backend) throws {
    let loop = try makeLoop(backend)
    try loop.runFiberUntilComplete {
      let listener = try TCPListener(port: 0)
      // A reset peer.
      let raw = rawConnect(port: listener.port)
      let server = try listener.accept()
      loop.callLater(.milliseconds(10)) { abortiveClose(raw) }
      #expect(throws: TinyAsyncError.connectionReset) { try server.read() }
      server.close()
      #expect(throws: TinyAsyncError.closed) { try server.read() }
      #expect(throws: TinyAsyncError.closed) { try server.write("x") }
      // Refused, and a host that is no host.
      let port = listener.port
      listener.close()
      #expect(throws: TinyAsyncError.closed) { try listener.accept() }
      #expect(throws: TinyAsyncError.connectionRefused) {
        _ = try TCPConnection.connect(host: "127.0.0.1", port: port)
      }
      #expect(throws: TinyAsyncError.hostNotFound) {
        _ = try TCPConnection.connect(host: "bad..host", port: port)
      }
    }
  }

  @Test(arguments: backends)
  func cancellingAndTimingOutAFiberRead(_ backend: EventLoop.Backend) throws {
    let loop = try makeLoop(backend, clock: .manual)  // see aTimeoutOnARead...
    try loop.runFiberUntilComplete {
      let listener = try TCPListener(port: 0)
      let client = try TCPConnection.connect(host: "127.0.0.1", port: listener.port)
      let server = try listener.accept()
      let reader = loop.spawnFiber { try client.read() }
      try sleep(for: .milliseconds(5))
      reader.cancel()
      #expect(throws: TinyAsyncError.cancelled) { try reader.get() }
      try server.write("after")
      #expect(try client.read() == bytes("after"))

      let start = loop.now
      #expect(throws: TinyAsyncError.timedOut) {
        try withTimeout(.milliseconds(20)) { try client.read() }
      }
      #expect(loop.now - start == .milliseconds(20))
      try server.write("half")
      #expect(throws: TinyAsyncError.timedOut) {
        try withTimeout(.milliseconds(20)) { try client.read(until: UInt8(ascii: "\n")) }
      }
      try server.write(" line\n")
      #expect(try client.read(until: UInt8(ascii: "\n")) == bytes("half line\n"))

      let accepter = loop.spawnFiber { try listener.accept() }
      try sleep(for: .milliseconds(5))
      accepter.cancel()
      #expect(throws: TinyAsyncError.cancelled) { _ = try accepter.get() }
    }
  }

  /// Synchronous code, no fiber: Swift picks the fiber form.
  static func acceptOutsideAFiber() throws {
    let loop = try EventLoop()
    let listener = try TCPListener(port: 0, on: loop)
    _ = try listener.accept()
  }

  @Test func aFiberAcceptOutsideAFiberStops() async {
    let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
      try TCPFiberTests.acceptOutsideAFiber()
    }
    let text = String(decoding: result?.standardErrorContent ?? [], as: UTF8.self)
    #expect(text.contains("TCPListener.accept() was called outside a fiber"))
  }
}
