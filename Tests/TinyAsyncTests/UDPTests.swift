import Glibc
import Testing
import TinyAsync

/// A datagram of `size` bytes that says which one it is.
private func pattern(_ size: Int, _ tag: Int = 0) -> [UInt8] {
  (0..<size).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ tag) }
}

@Suite("UDP: datagrams on both backends and both fronts")
struct UDPTests {
  static let backends: [EventLoop.Backend] = [.epoll, .ioUring]

  @Test(arguments: backends)
  func sizesFromZeroTo65507BytesWithTheSender(_ backend: EventLoop.Backend) throws {
    let loop = try makeLoop(backend)
    try loop.runUntilComplete {
      let a = try UDPSocket(host: "127.0.0.1", port: 0)
      let b = try UDPSocket(host: "127.0.0.1", port: 0)
      defer { a.close(); b.close() }
      let aAddress = try a.localAddress
      #expect(aAddress == .ipv4("127.0.0.1", port: try a.port))
      for size in [0, 1, 1472, 65507] {
        let data = pattern(size, size)
        try await a.send(data, to: try b.localAddress)
        let datagram = try await b.receive(max: 65536)
        #expect(datagram.bytes == data)
        #expect(datagram.sender == aAddress)
        #expect(!datagram.truncated)
        try await b.send(datagram.bytes, to: datagram.sender)  // and back
        #expect(try await a.receive().bytes == data)
      }
      // One byte over IPv4's limit is refused, not cut.
      await #expect(throws: TinyAsyncError.system(errno: EMSGSIZE, message: String(cString: strerror(EMSGSIZE)))) {
        try await a.send(pattern(65508), to: try b.localAddress)
      }
    }
  }

  @Test(arguments: backends)
  func aDatagramLongerThanMaxIsReportedTruncated(_ backend: EventLoop.Backend) throws {
    let loop = try makeLoop(backend)
    try loop.runUntilComplete {
      let a = try UDPSocket(host: "127.0.0.1", port: 0)
      let b = try UDPSocket(host: "127.0.0.1", port: 0)
      defer { a.close(); b.close() }
      try await a.send(pattern(100), to: try b.localAddress)
      try await a.send(pattern(10, 1), to: try b.localAddress)
      let cut = try await b.receive(max: 10)
      #expect(cut.truncated && cut.bytes == Array(pattern(100).prefix(10)))
      let whole = try await b.receive(max: 10)  // exactly max: not truncated
      #expect(!whole.truncated && whole.bytes == pattern(10, 1))
    }
  }

  @Test(arguments: backends)
  func tenThousandDatagramsInOrderWithEveryLossCounted(_ backend: EventLoop.Backend) throws {
    let loop = try makeLoop(backend)
    try loop.runUntilComplete {
      let a = try UDPSocket(host: "127.0.0.1", port: 0)
      let b = try UDPSocket(host: "127.0.0.1", port: 0)
      defer { a.close(); b.close() }
      let total = 10_000
      let window = 64  // in flight at most: loopback drops a flood, not this
      var received = 0
      let to = try b.localAddress
      let sender = loop.spawn {
        for i in 0..<total {
          while i - received >= window { try await sleep(for: .zero) }
          var message = withUnsafeBytes(of: UInt32(i).littleEndian) { Array($0) }
          message += [UInt8](repeating: UInt8(truncatingIfNeeded: i), count: 28)
          try await a.send(message, to: to)
        }
      }
      var expected = 0, lost = 0, reordered = 0
      try await withTimeout(.seconds(10)) {  // a hang fails
        while expected < total {
          let datagram = try await b.receive(max: 64)
          #expect(datagram.bytes.count == 32)
          let seq = Int(datagram.bytes[0]) | Int(datagram.bytes[1]) << 8 | Int(datagram.bytes[2]) << 16
          #expect(datagram.bytes[31] == UInt8(truncatingIfNeeded: seq))
          if seq < expected {
            reordered += 1
            continue
          }
          lost += seq - expected
          expected = seq + 1
          received += 1
        }
      }
      try await sender.value
      #expect(lost == 0)
      #expect(reordered == 0)
      #expect(received == total)
    }
  }

  @Test(arguments: backends)
  func aConnectedSocketHearsThatItsPeerRefused(_ backend: EventLoop.Backend) throws {
    let loop = try makeLoop(backend)
    try loop.runUntilComplete {
      let gone = try UDPSocket(host: "127.0.0.1", port: 0)
      let goneAddress = try gone.localAddress
      gone.close()  // nobody at that port now
      let peer = try UDPSocket(host: "127.0.0.1", port: 0)
      let client = try UDPSocket(host: "127.0.0.1", port: 0)
      defer { peer.close(); client.close() }

      try client.connect(to: try peer.localAddress)
      let peerAddress = try peer.localAddress
      #expect(client.remoteAddress == peerAddress)
      try await client.send(bytes("ping"))
      let ping = try await peer.receive()
      let clientAddress = try client.localAddress
      #expect(ping.bytes == bytes("ping") && ping.sender == clientAddress)
      try await peer.send(bytes("pong"), to: ping.sender)
      #expect(try await client.receive().bytes == bytes("pong"))

      try client.connect(to: goneAddress)
      try await client.send(bytes("anyone?"))
      try await withTimeout(.seconds(5)) {
        await #expect(throws: TinyAsyncError.connectionRefused) { _ = try await client.receive() }
      }
      // Once: the next send goes out again (and is refused again later).
      try await client.send(bytes("again"))
    }
  }

  @Test(arguments: backends)
  func ipv6OnLoopback(_ backend: EventLoop.Backend) throws {
    let loop = try makeLoop(backend)
    try loop.runUntilComplete {
      let a: UDPSocket
      do {
        a = try UDPSocket(host: "::1", port: 0)
      } catch {
        print("SKIP: ::1 cannot be bound here: \(error)")
        return
      }
      let b = try UDPSocket(bind: .ipv6("::1", port: 0))
      defer { a.close(); b.close() }
      for size in [0, 1, 1452, 65487] {
        try await a.send(pattern(size), to: try b.localAddress)
        let datagram = try await b.receive()
        #expect(datagram.bytes == pattern(size))
        #expect(datagram.sender == .ipv6("::1", port: try a.port))
      }
    }
  }

  @Test(arguments: backends)
  func aParkedReceiveIsCancelledOrTimedOutAndNothingIsLost(_ backend: EventLoop.Backend) throws {
    let loop = try makeLoop(backend)
    try loop.runUntilComplete {
      let a = try UDPSocket(host: "127.0.0.1", port: 0)
      let b = try UDPSocket(host: "127.0.0.1", port: 0)
      defer { a.close(); b.close() }
      let start = loop.now
      await #expect(throws: TinyAsyncError.timedOut) {
        try await withTimeout(.milliseconds(20)) { _ = try await b.receive() }
      }
      #expect(loop.now - start >= .milliseconds(20))
      let receiver = loop.spawn { try await b.receive() }
      try await sleep(for: .milliseconds(5))
      receiver.cancel()
      await #expect(throws: TinyAsyncError.cancelled) { _ = try await receiver.value }
      // Neither took a datagram: the next one sent is the one received.
      try await a.send(bytes("after"), to: try b.localAddress)
      #expect(try await b.receive().bytes == bytes("after"))
      // Closing wakes a parked receive with .closed.
      let parked = loop.spawn { try await b.receive() }
      try await sleep(for: .milliseconds(1))
      b.close()
      await #expect(throws: TinyAsyncError.closed) { _ = try await parked.value }
      await #expect(throws: TinyAsyncError.closed) { _ = try await b.receive() }
    }
  }

  @Test(arguments: backends)
  func theSocketIsASequenceThatEndsWhenItCloses(_ backend: EventLoop.Backend) throws {
    let loop = try makeLoop(backend)
    try loop.runUntilComplete {
      let server = try UDPSocket(host: "127.0.0.1", port: 0)
      let client = try UDPSocket(host: "127.0.0.1", port: 0)
      defer { client.close() }
      let echo = loop.spawn {
        var count = 0
        for try await datagram in server {
          count += 1
          try await server.send(datagram.bytes, to: datagram.sender)
        }
        return count
      }
      for i in 0..<5 {
        try await client.send(pattern(i * 100, i), to: try server.localAddress)
        #expect(try await client.receive().bytes == pattern(i * 100, i))
      }
      server.close()
      #expect(try await echo.value == 5)
    }
  }

  @Test func broadcastAndMulticastOptions() throws {
    let loop = try EventLoop()
    try loop.runUntilComplete {
      let socket = try UDPSocket(host: "0.0.0.0", port: 0)
      defer { socket.close() }
      let everyone = try SocketAddress(host: "255.255.255.255", port: 9)
      await #expect(throws: TinyAsyncError.system(errno: EACCES, message: String(cString: strerror(EACCES)))) {
        try await socket.send([1], to: everyone)
      }
      try socket.setBroadcast(true)
      try socket.setBroadcast(false)
      #expect(throws: TinyAsyncError.system(errno: EINVAL, message: String(cString: strerror(EINVAL)))) {
        try socket.joinMulticastGroup("10.0.0.1", interface: "lo")  // not a group
      }
      do {
        try socket.joinMulticastGroup("239.255.7.8", interface: "lo")
      } catch {
        print("SKIP: multicast on lo: \(error)")
        return
      }
      try socket.setMulticastLoopback(true)
      try socket.leaveMulticastGroup("239.255.7.8", interface: "lo")
      #expect(throws: TinyAsyncError.system(errno: EADDRNOTAVAIL, message: String(cString: strerror(EADDRNOTAVAIL)))) {
        try socket.leaveMulticastGroup("239.255.7.8", interface: "lo")
      }
    }
  }

  @Test func addressesFromNumericHosts() throws {
    #expect(try SocketAddress(host: "127.0.0.1", port: 53) == .ipv4("127.0.0.1", port: 53))
    #expect(try SocketAddress(host: "::1", port: 8080) == .ipv6("::1", port: 8080))
    #expect(throws: TinyAsyncError.self) { try SocketAddress(host: "localhost", port: 1) }
    #expect(throws: TinyAsyncError.self) { try SocketAddress(host: "1.2.3.4", port: 65536) }
    let loop = try EventLoop()
    try loop.runUntilComplete {
      let taken = try UDPSocket(host: "127.0.0.1", port: 0)
      defer { taken.close() }
      #expect(throws: TinyAsyncError.addressInUse) { _ = try UDPSocket(host: "127.0.0.1", port: try taken.port) }
      #expect(throws: TinyAsyncError.system(errno: EAFNOSUPPORT, message: String(cString: strerror(EAFNOSUPPORT)))) {
        _ = try UDPSocket(bind: .unix("/tmp/x"))
      }
    }
  }

  // MARK: Fibers

  @Test(arguments: backends)
  func theFiberFormsEchoTruncateAndTimeOut(_ backend: EventLoop.Backend) throws {
    let loop = try makeLoop(backend)
    for stack in [FiberStack.private, .shared] {
      try loop.runFiberUntilComplete(on: stack) {
        let server = try UDPSocket(host: "127.0.0.1", port: 0)
        let client = try UDPSocket(host: "127.0.0.1", port: 0)
        defer { client.close() }
        let echo = loop.spawnFiber(stack: stack) { () throws -> Int in
          var count = 0
          while true {
            let datagram: Datagram
            do { datagram = try server.receive(max: 65536) } catch TinyAsyncError.closed { return count }
            count += 1
            try server.send(datagram.bytes, to: datagram.sender)
          }
        }
        let serverAddress = try server.localAddress
        for size in [0, 1, 1472, 65507] {
          try client.send(pattern(size, 3), to: serverAddress)
          let back = try client.receive(max: 65536)
          #expect(back.bytes == pattern(size, 3) && back.sender == serverAddress && !back.truncated)
        }
        try client.send(pattern(300), to: serverAddress)
        let cut = try client.receive(max: 30)
        #expect(cut.truncated && cut.bytes == Array(pattern(300).prefix(30)))
        // Connected form.
        try client.connect(to: serverAddress)
        try client.send(bytes("hi"))
        #expect(try client.receive().bytes == bytes("hi"))
        #expect(throws: TinyAsyncError.timedOut) {
          try withTimeout(.milliseconds(10)) { _ = try client.receive() }
        }
        server.close()
        #expect(try echo.get() == 6)
      }
    }
  }
}
