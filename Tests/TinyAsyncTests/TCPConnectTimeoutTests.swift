import Glibc
import Testing
@testable import TinyAsync

/// Sockets in SYN_SENT towards 127.0.0.1:`port`: connects the peer has
/// not answered, from /proc/net/tcp. That file can be long on a busy
/// machine (every socket of the namespace, TIME_WAIT ones too), so each
/// line is matched with strstr, and a socket listed twice (the kernel's
/// walk may repeat an entry while sockets come and go) is counted once.
private func connectsInFlight(to port: Int) -> Int {
  guard let file = fopen("/proc/net/tcp", "r") else { return -1 }
  defer { fclose(file) }
  // "  sl  local_address rem_address   st ...": the remote end, then state 02.
  let pattern = String(format: " 0100007F:%04X 02 ", port)
  var seen = Set<String>()
  var line = [CChar](repeating: 0, count: 512)
  while fgets(&line, Int32(line.count), file) != nil {
    line.withUnsafeBufferPointer { buffer in
      guard let base = buffer.baseAddress, let hit = strstr(base, pattern), UnsafePointer(hit) - base >= 13 else { return }
      // The local address just before it ("0100007F:ABCD") names the socket.
      let local = UnsafeBufferPointer(start: UnsafePointer(hit) - 13, count: 13)
      seen.insert(String(decoding: local.map { UInt8(bitPattern: $0) }, as: UTF8.self))
    }
  }
  return seen.count
}

/// A blocking connect from this thread (no loop): the listener's queue
/// takes it without anyone accepting.
private func connectBlocking(port: Int) -> Int32 {
  let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
  var sin = sockaddr_in()
  sin.sin_family = sa_family_t(AF_INET)
  sin.sin_port = UInt16(port).bigEndian
  sin.sin_addr.s_addr = UInt32(0x7f00_0001).bigEndian
  let rc = withUnsafePointer(to: &sin) {
    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
  }
  precondition(rc == 0, "connect: \(errno)")
  return fd
}

@Suite("TCP: connect with a timeout")
struct TCPConnectTimeoutTests {
  /// A listener with a full accept queue drops the next SYN (Linux), so
  /// that connect stays in flight: the timeout ends it, on the manual
  /// clock at once, and closes its socket.
  @Test(arguments: [EventLoop.Backend.epoll, .ioUring])
  func aConnectThatTakesTooLongTimesOutAndLeavesNoSocket(_ backend: EventLoop.Backend) throws {
    let loop = try makeLoop(backend, clock: .manual)
    let listener = try TCPListener(host: "127.0.0.1", port: 0, backlog: 1, on: loop)
    let port = listener.port
    // Fill the queue: Linux queues backlog + 1 connections (backlog 0
    // would mean the default, SOMAXCONN).
    let fillers = [connectBlocking(port: port), connectBlocking(port: port)]
    defer { for fd in fillers { Glibc.close(fd) } }
    final class Seen { var inFlight = -1 }
    let seen = LoopThreadBox(Seen())
    let outcome = try loop.runUntilComplete {
      let start = loop.now
      loop.callLater(.milliseconds(10)) { seen.value.inFlight = connectsInFlight(to: port) }
      do {
        _ = try await TCPConnection.connect(host: "127.0.0.1", port: port, timeout: .milliseconds(50))
        return ("connected", loop.now - start)
      } catch {
        return ((error as? TinyAsyncError) == .timedOut ? "timed out" : "\(error)", loop.now - start)
      }
    }
    try loop.runUntilIdle()  // the cancelled attempt's completion, which closes its socket
    #expect(seen.value.inFlight == 1)  // the test's premise: the SYN went unanswered
    #expect(outcome.0 == "timed out")
    #expect(outcome.1 == .milliseconds(50))
    #expect(connectsInFlight(to: port) == 0)
    listener.close()
  }

  @Test func aConnectWithinItsTimeoutConnects() throws {
    let loop = try makeLoop(.automatic)
    let listener = try TCPListener(host: "127.0.0.1", port: 0, on: loop)
    let port = listener.port
    let remote = try loop.runUntilComplete {
      let connection = try await TCPConnection.connect(host: "127.0.0.1", port: port, timeout: .seconds(30))
      defer { connection.close() }
      return try connection.remotePort
    }
    #expect(remote == port)
  }

  @Test(arguments: [Duration.zero, .milliseconds(-1)])
  func noTimeLeftFailsBeforeTrying(_ timeout: Duration) throws {
    let loop = try makeLoop(.automatic, clock: .manual)
    let listener = try TCPListener(host: "127.0.0.1", port: 0, on: loop)
    final class Accepted { var count = 0 }
    let accepted = LoopThreadBox(Accepted())
    loop.spawn { _ = try await listener.accept(); accepted.value.count += 1 }
    let port = listener.port
    let outcome = try loop.runUntilComplete {
      do {
        _ = try await TCPConnection.connect(host: "127.0.0.1", port: port, timeout: timeout)
        return "connected"
      } catch {
        return (error as? TinyAsyncError) == .timedOut ? "timed out" : "\(error)"
      }
    }
    #expect(outcome == "timed out")
    #expect(accepted.value.count == 0)  // no attempt reached the listener
    listener.close()
  }
}
