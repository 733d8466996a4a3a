import Glibc
import Synchronization
import Testing
import TinyAsync

/// Issue 19: a server that churns connections keeps a flat RSS. Six
/// bursts of connections that each send one message, read its echo and
/// close, against an echo server written as a user would (a task or a
/// fiber per connection, `read(max:)` then `write`); the server's RSS
/// after burst 3 and after burst 6 must be within 5 % of each other.
/// Before the loop's buffer pool, each burst left tens of MiB more behind
/// (glibc's heap, fragmented by 256 KiB read buffers among small objects).
///
/// Each case runs in a child process (an exit test), so that no other
/// test's memory is counted; RSS is meaningless under a sanitizer's
/// allocator (ASan's quarantine keeps what is freed), so those builds
/// SKIP.
@Suite("Churn: flat memory")
struct ChurnMemoryTests {
  enum Front { case async, fiber }

  /// What the server and the client thread share.
  final class Shared: Sendable {
    /// Connections the server has open.
    let count = Atomic<Int>(0)
    /// The RSS in KiB after each burst.
    let rss = Mutex<[Int]>([])
  }

  /// Connections per burst: each is open at once, as in a burst of
  /// clients.
  static let perBurst = 3000
  static let bursts = 6

  /// Why the measurement cannot run here, or nil.
  static func skipReason() -> String? {
    if dlsym(UnsafeMutableRawPointer(bitPattern: 0), "__asan_init") != nil {
      return "SKIP: RSS under AddressSanitizer counts its quarantine, not the heap"
    }
    if dlsym(UnsafeMutableRawPointer(bitPattern: 0), "__tsan_init") != nil {
      return "SKIP: RSS under ThreadSanitizer counts its shadow memory"
    }
    if !raiseFileLimit(to: rlim_t(2 * perBurst + 200)) {
      return "SKIP: RLIMIT_NOFILE is \(fileLimit()), too low for both ends of \(perBurst) connections"
    }
    return nil
  }

  /// The child's side: serves `bursts × perBurst` connections on `front`
  /// and `backend` while a client thread makes the bursts; prints the RSS
  /// after each and exits 1 if bursts 3 and 6 differ by more than 5 %.
  static func churn(_ front: Front, _ backend: EventLoop.Backend) throws {
    if let reason = skipReason() {
      printErr(reason)
      return
    }
    let loop: EventLoop
    do {
      loop = try EventLoop(backend: backend)
    } catch {
      if error == .backendUnavailable {
        printErr("SKIP: \(backend) unavailable here")
        return
      }
      throw error
    }
    let listener = try TCPListener(host: "127.0.0.1", port: 0, backlog: 4096, on: loop)
    let port = listener.port
    let shared = Shared()
    let live = shared
    let client = startThread {
      for _ in 0..<bursts {
        burst(port: port)
        // The server has closed its ends when its count is back to 0.
        while live.count.load(ordering: .acquiring) > 0 { usleep(1000) }
        shared.rss.withLock { $0.append(residentKiB()) }
      }
    }
    let total = bursts * perBurst
    switch front {
    case .async:
      try loop.runUntilComplete {
        for _ in 0..<total {
          let connection = try await listener.accept()
          live.count.add(1, ordering: .relaxed)
          loop.spawn {
            defer { connection.close(); live.count.subtract(1, ordering: .releasing) }
            while true {
              guard let bytes = try? await connection.read(max: 256 * 1024), !bytes.isEmpty else { return }
              guard (try? await connection.write(bytes)) != nil else { return }
            }
          }
        }
        while live.count.load(ordering: .acquiring) > 0 { try await sleep(for: .milliseconds(1)) }
        listener.close()
      }
    case .fiber:
      try loop.runFiberUntilComplete {
        for _ in 0..<total {
          let connection = try listener.accept()
          live.count.add(1, ordering: .relaxed)
          loop.spawnFiber {
            defer { connection.close(); live.count.subtract(1, ordering: .releasing) }
            while true {
              guard let bytes = try? connection.read(max: 256 * 1024), !bytes.isEmpty else { return }
              guard (try? connection.write(bytes)) != nil else { return }
            }
          }
        }
        while live.count.load(ordering: .acquiring) > 0 { try sleep(for: .milliseconds(1)) }
        listener.close()
      }
    }
    joinThread(client)
    let figures = shared.rss.withLock { $0 }
    let text = figures.map { "\((Double($0) / 102.4).rounded() / 10)" }.joined(separator: " -> ")
    printErr("RSS MiB after each burst of \(perBurst) (\(front), \(backend)): \(text)")
    if figures.count != bursts || figures.contains(0) {
      printErr("FAIL: no RSS figure read from /proc/self/status: \(figures)")
      exit(1)
    }
    let third = Double(figures[2]), sixth = Double(figures[5])
    // The issue asks for 15 %; 5 % it is, since before the pool this load
    // grew by 13 % from burst 3 to 6 (and by 50 % from burst 2), and with
    // it by under 2 %.
    if abs(sixth - third) > 0.05 * third {
      printErr("FAIL: RSS after burst 6 is not within 5 % of burst 3")
      exit(1)
    }
  }

  /// ``churn(_:_:)``, saying what it threw (an exit test's thrown error
  /// reaches the parent as a bare exit code).
  static func churnOrSay(_ front: Front, _ backend: EventLoop.Backend) {
    do {
      try churn(front, backend)
    } catch {
      printErr("FAIL: \(front) on \(backend) threw \(error)")
      exit(1)
    }
  }

  static func asyncEpoll() { churnOrSay(.async, .epoll) }
  static func asyncUring() { churnOrSay(.async, .ioUring) }
  static func fiberEpoll() { churnOrSay(.fiber, .epoll) }
  static func fiberUring() { churnOrSay(.fiber, .ioUring) }

  /// One burst: `perBurst` connections opened together, each sends 64
  /// bytes and reads their echo, then all close. Blocking sockets: the
  /// client allocates nothing per connection on the heap.
  static func burst(port: Int) {
    var fds = [Int32](repeating: -1, count: perBurst)
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = in_port_t(UInt16(port).bigEndian)
    address.sin_addr.s_addr = UInt32(0x7f00_0001).bigEndian
    var message = [UInt8](repeating: 0, count: 64)
    for i in message.indices { message[i] = UInt8(truncatingIfNeeded: i &* 7 &+ 3) }
    var timeout = timeval(tv_sec: 20, tv_usec: 0)
    for i in 0..<perBurst {
      let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
      precondition(fd >= 0, "socket: errno \(errno)")
      setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
      let rc = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
          connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
        }
      }
      precondition(rc == 0, "connect: errno \(errno)")
      fds[i] = fd
    }
    for fd in fds { precondition(send(fd, message, 64, Int32(MSG_NOSIGNAL)) == 64, "send: errno \(errno)") }
    var back = [UInt8](repeating: 0, count: 64)
    for fd in fds {
      var got = 0
      while got < 64 {
        let n = back.withUnsafeMutableBytes { recv(fd, $0.baseAddress! + got, 64 - got, 0) }
        precondition(n > 0, "recv: \(n == 0 ? "end of stream" : "errno \(errno)") before the echo")
        got += n
      }
      precondition(back == message, "the echo differs from the message")
    }
    for fd in fds { close(fd) }
  }

  static func residentKiB() -> Int {
    guard let file = fopen("/proc/self/status", "r") else { return 0 }
    defer { fclose(file) }
    var line = [CChar](repeating: 0, count: 256)
    while fgets(&line, 256, file) != nil {
      let text = String(decoding: line.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
      if text.hasPrefix("VmRSS:") {
        return Int(text.dropFirst(6).split(whereSeparator: { $0 == " " || $0 == "\t" }).first ?? "") ?? 0
      }
    }
    return 0
  }

  static func printErr(_ text: String) {
    let line = text + "\n"
    _ = line.withCString { write(2, $0, strlen($0)) }
  }

  /// The parent's side: the child must exit 0; its words are printed, and
  /// a SKIP it printed cancels the case aloud.
  static func check(_ result: ExitTest.Result?) throws {
    let text = String(decoding: result?.standardErrorContent ?? [], as: UTF8.self)
    print(text, terminator: "")
    if let skip = text.split(separator: "\n").first(where: { $0.hasPrefix("SKIP") }) {
      try Test.cancel(Comment(rawValue: String(skip)))
    }
    #expect(text.contains("RSS MiB after each burst"))
  }

  @Test func asyncOnEpoll() async throws {
    let result = await #expect(processExitsWith: .success, observing: [\.standardErrorContent]) {
      ChurnMemoryTests.asyncEpoll()
    }
    try Self.check(result)
  }

  @Test func asyncOnIoUring() async throws {
    let result = await #expect(processExitsWith: .success, observing: [\.standardErrorContent]) {
      ChurnMemoryTests.asyncUring()
    }
    try Self.check(result)
  }

  @Test func fibersOnEpoll() async throws {
    let result = await #expect(processExitsWith: .success, observing: [\.standardErrorContent]) {
      ChurnMemoryTests.fiberEpoll()
    }
    try Self.check(result)
  }

  @Test func fibersOnIoUring() async throws {
    let result = await #expect(processExitsWith: .success, observing: [\.standardErrorContent]) {
      ChurnMemoryTests.fiberUring()
    }
    try Self.check(result)
  }
}
