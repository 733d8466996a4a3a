import Glibc
import Testing
import TinyAsync

/// A socket path of this test's own.
func socketPath(_ tag: String) -> String {
  let path = "/tmp/tinyasync-test-\(getpid())-\(tag).sock"
  unlink(path)
  return path
}

@Suite("Unix domain sockets: the TCP types on a path")
struct UnixSocketTests {
  @Test(arguments: [EventLoop.Backend.epoll, .ioUring])
  func echoOneByteToFourMiBOnAPathAndAnAbstractName(_ backend: EventLoop.Backend) throws {
    let loop = try makeLoop(backend)
    for name in [socketPath("echo-\(backend)"), "@tinyasync-test-\(getpid())-\(backend)"] {
      try loop.runUntilComplete {
        let listener = try TCPListener(unixPath: name)
        #expect(listener.unixPath == name && listener.port == 0)
        loop.spawn {
          let connection = try await listener.accept()
          defer { connection.close() }
          var buffer: [UInt8] = []
          while true {
            buffer.removeAll(keepingCapacity: true)
            if try await connection.read(into: &buffer, max: 65536) == 0 { return }
            try await connection.write(buffer)
          }
        }
        let client = try await TCPConnection.connect(unixPath: name)
        defer { client.close() }
        #expect(try client.remoteAddress == .unix(name))
        let credentials = try client.peerCredentials
        #expect(credentials.pid == getpid() && credentials.uid == getuid())
        for size in [1, 1000, 65536, 1 << 20, 4 << 20] {
          let data = (0..<size).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ size) }
          let writer = loop.spawn { try await client.write(data) }  // 4 MiB does not fit the buffers
          var echoed: [UInt8] = []
          while echoed.count < size { echoed += try await client.read(max: size - echoed.count) }
          try await writer.value
          #expect(echoed == data)
        }
        listener.close()
      }
      if !name.hasPrefix("@") { unlink(name) }
    }
  }

  @Test func aStaleFileIsTakenOverOnlyWhenAskedAndNeverALiveOne() throws {
    let loop = try EventLoop()
    let path = socketPath("stale")
    defer { unlink(path) }
    try loop.runUntilComplete {
      let dead = try TCPListener(unixPath: path)
      dead.close()  // the file stays: a dead server's
      #expect(throws: TinyAsyncError.addressInUse) { _ = try TCPListener(unixPath: path) }
      let live = try TCPListener(unixPath: path, replaceStale: true)
      #expect(throws: TinyAsyncError.addressInUse) { _ = try TCPListener(unixPath: path, replaceStale: true) }
      live.close()
      let tooLong = "/tmp/" + String(repeating: "x", count: 200)
      #expect(throws: TinyAsyncError.system(errno: ENAMETOOLONG, message: String(cString: strerror(ENAMETOOLONG)))) {
        _ = try TCPListener(unixPath: tooLong)
      }
      await #expect(throws: TinyAsyncError.system(errno: ENOENT, message: String(cString: strerror(ENOENT)))) {
        _ = try await TCPConnection.connect(unixPath: "/tmp/no-such-socket-\(getpid())")
      }
    }
  }

  @Test func theFiberFormsAndTCPAddresses() throws {
    let loop = try EventLoop()
    let path = socketPath("fiber")
    defer { unlink(path) }
    try loop.runFiberUntilComplete {
      let listener = try TCPListener(unixPath: path)
      let server = loop.spawnFiber { () throws -> [UInt8] in
        let connection = try listener.accept()
        defer { connection.close() }
        return try connection.read(max: 100)
      }
      let client = try TCPConnection.connect(unixPath: path)
      try client.write("hello")
      #expect(try server.get() == Array("hello".utf8))
      client.close()
      listener.close()
      // TCP addresses, both ends.
      let tcp = try TCPListener(host: "127.0.0.1", port: 0)
      let accepted = loop.spawnFiber { try tcp.accept() }
      let c = try TCPConnection.connect(host: "127.0.0.1", port: tcp.port)
      let s = try accepted.get()
      #expect(try c.remoteAddress == .ipv4("127.0.0.1", port: tcp.port))
      #expect(try s.localAddress == .ipv4("127.0.0.1", port: tcp.port))
      #expect(try s.remoteAddress == c.localAddress)
      #expect("\(try c.remoteAddress)" == "127.0.0.1:\(tcp.port)")
      c.close()
      s.close()
      tcp.close()
    }
  }
}
