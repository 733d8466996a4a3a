import Glibc
import Testing
@testable import TinyAsync

/// A connected pair on `loop`: the client's end and the accepted one.
private func connectedPair(_ listener: TCPListener) async throws -> (TCPConnection, TCPConnection) {
  let accepted = listener.loop.spawn { try await listener.accept() }
  let client = try await TCPConnection.connect(host: "127.0.0.1", port: listener.port)
  return (client, try await accepted.value)
}

private func detail(_ body: () throws(TinyAsyncError) -> Void) -> String {
  do {
    try body()
    return "no error"
  } catch {
    if let detail = error.detail { return detail }
    return "\(error)"
  }
}

@Suite("TCP socket options: no delay, keep-alive, buffer sizes")
struct SocketOptionsTests {
  @Test(arguments: [EventLoop.Backend.epoll, .ioUring])
  func noDelayIsOnByDefaultAndCanBeTurnedOff(_ backend: EventLoop.Backend) throws {
    let loop = try makeLoop(backend)
    let seen = try loop.runUntilComplete {
      let listener = try TCPListener(host: "127.0.0.1", port: 0)
      let (client, server) = try await connectedPair(listener)
      defer { client.close(); server.close(); listener.close() }
      var seen = [try client.noDelay, try server.noDelay]
      try client.setNoDelay(false)
      seen.append(try client.noDelay)
      try client.setNoDelay(true)
      seen.append(try client.noDelay)
      return seen
    }
    #expect(seen == [true, true, false, true])
  }

  @Test func keepAliveIsOffByDefaultAndTakesItsTimings() throws {
    let loop = try makeLoop(.automatic)
    let seen = try loop.runUntilComplete {
      let listener = try TCPListener(host: "127.0.0.1", port: 0)
      let (client, server) = try await connectedPair(listener)
      defer { client.close(); server.close(); listener.close() }
      let before = try client.keepAlive
      let asked = TCPKeepAlive(idle: .seconds(60), interval: .seconds(10), count: 5)
      try client.setKeepAlive(asked)
      let during = try client.keepAlive
      try client.setKeepAlive(nil)
      return [before, during, try client.keepAlive, asked]
    }
    #expect(seen[0] == nil)
    #expect(seen[1] == seen[3])
    #expect(seen[2] == nil)
  }

  /// Bad input names the field and the value, and changes nothing.
  @Test func keepAliveOutOfRangeNamesTheFieldAndSetsNothing() throws {
    let loop = try makeLoop(.automatic)
    let outcome = try loop.runUntilComplete {
      let listener = try TCPListener(host: "127.0.0.1", port: 0)
      let (client, server) = try await connectedPair(listener)
      defer { client.close(); server.close(); listener.close() }
      let halfSecond = detail { () throws(TinyAsyncError) in
        try client.setKeepAlive(TCPKeepAlive(idle: .milliseconds(500), interval: .seconds(1), count: 3))
      }
      let noProbes = detail { () throws(TinyAsyncError) in
        try client.setKeepAlive(TCPKeepAlive(idle: .seconds(60), interval: .seconds(1), count: 0))
      }
      let longInterval = detail { () throws(TinyAsyncError) in
        try client.setKeepAlive(TCPKeepAlive(idle: .seconds(60), interval: .seconds(40_000), count: 3))
      }
      return (halfSecond, noProbes, longInterval, try client.keepAlive == nil)
    }
    #expect(outcome.0 == "TCPConnection.setKeepAlive: idle must be whole seconds from 1 to 32767, got 0.5 seconds")
    #expect(outcome.1 == "TCPConnection.setKeepAlive: count must be 1 to 127 probes, got 0")
    #expect(outcome.2 == "TCPConnection.setKeepAlive: interval must be whole seconds from 1 to 32767, got 40000.0 seconds")
    #expect(outcome.3)
  }

  @Test func bufferSizesAreSetAndReadBackAsTheKernelKeepsThem() throws {
    let loop = try makeLoop(.automatic)
    let outcome = try loop.runUntilComplete {
      let listener = try TCPListener(host: "127.0.0.1", port: 0)
      let (client, server) = try await connectedPair(listener)
      defer { client.close(); server.close(); listener.close() }
      try client.setSendBufferSize(65536)
      try client.setReceiveBufferSize(32768)
      let zero = detail { () throws(TinyAsyncError) in try client.setSendBufferSize(0) }
      let huge = detail { () throws(TinyAsyncError) in try client.setReceiveBufferSize(Int(Int32.max) + 1) }
      return (try client.sendBufferSize, try client.receiveBufferSize, zero, huge)
    }
    // Linux keeps twice the size asked for (half of it for bookkeeping).
    #expect(outcome.0 == 131072)
    #expect(outcome.1 == 65536)
    #expect(outcome.2 == "TCPConnection.setSendBufferSize: SO_SNDBUF must be 1 to 2147483647 bytes, got 0")
    #expect(outcome.3 == "TCPConnection.setReceiveBufferSize: SO_RCVBUF must be 1 to 2147483647 bytes, got 2147483648")
  }

  /// What is set on a listener, the connections it accepts start with.
  @Test(arguments: [EventLoop.Backend.epoll, .ioUring])
  func acceptedConnectionsInheritTheListenersOptions(_ backend: EventLoop.Backend) throws {
    let loop = try makeLoop(backend)
    let outcome = try loop.runUntilComplete {
      let listener = try TCPListener(host: "127.0.0.1", port: 0)
      let keepAlive = TCPKeepAlive(idle: .seconds(30), interval: .seconds(5), count: 4)
      try listener.setKeepAlive(keepAlive)
      try listener.setReceiveBufferSize(16384)
      try listener.setSendBufferSize(16384)
      let onListener = [try listener.receiveBufferSize, try listener.sendBufferSize]
      let (client, server) = try await connectedPair(listener)
      defer { client.close(); server.close(); listener.close() }
      return (
        try server.keepAlive == keepAlive, try listener.keepAlive == keepAlive,
        onListener, [try server.receiveBufferSize, try server.sendBufferSize]
      )
    }
    #expect(outcome.0 && outcome.1)
    #expect(outcome.2 == [32768, 32768])
    #expect(outcome.3 == [32768, 32768])
  }

  @Test func optionsOfAClosedOrAUnixConnectionFailWithTheOptionNamed() throws {
    let loop = try makeLoop(.automatic)
    let path = "@tinyasync-options-\(getpid())"
    let outcome = try loop.runUntilComplete {
      let listener = try TCPListener(unixPath: path)
      let accepted = loop.spawn { try await listener.accept() }
      let client = try await TCPConnection.connect(unixPath: path)
      let server = try await accepted.value
      defer { server.close(); listener.close() }
      let unix: String
      do {
        try client.setNoDelay(false)
        unix = "no error"
      } catch let error as TinyAsyncError {
        unix = "\(error)"
      }
      client.close()
      let closed: TinyAsyncError?
      do {
        _ = try client.noDelay
        closed = nil
      } catch let error as TinyAsyncError {
        closed = error
      }
      return (unix, closed)
    }
    #expect(outcome.0 == "TCPConnection.setNoDelay: TCP_NODELAY: Operation not supported (errno \(EOPNOTSUPP))")
    #expect(outcome.1 == TinyAsyncError.closed)
  }
}
