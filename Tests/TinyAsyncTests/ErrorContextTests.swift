import CLoop
import Glibc
import Testing
@testable import TinyAsync

/// Errors say what failed: the host and port, the path, the program; a bad
/// port names its value; the context changes no match and no equality.
@Suite("TinyAsyncError: errors with context")
struct ErrorContextTests {
  static let backends: [EventLoop.Backend] = [.epoll, .ioUring]

  /// A loopback port that nobody listens on (one the system just handed
  /// out and took back).
  static func freePort() throws -> Int {
    let fd = cloop_tcp_listen("127.0.0.1", 0, 1, 0)
    try #require(fd >= 0)
    defer { close(fd) }
    return Int(cloop_sock_port(fd))
  }

  // MARK: TCP

  @Test(arguments: backends)
  func aRefusedConnectNamesTheHostAndPort(_ backend: EventLoop.Backend) throws {
    let loop = try makeLoop(backend)
    let port = try Self.freePort()
    let text = try loop.runUntilComplete { () async throws -> String in
      do throws(TinyAsyncError) {
        _ = try await TCPConnection.connect(host: "127.0.0.1", port: port)
        return "connected"
      } catch .connectionRefused {  // the case still matches, context and all
        do throws(TinyAsyncError) {
          _ = try await TCPConnection.connect(host: "127.0.0.1", port: port)
          return "connected"
        } catch {
          return "\(error)"
        }
      }
    }
    #expect(text == "connection refused: connect to 127.0.0.1:\(port): \(String(cString: strerror(ECONNREFUSED)))")
  }

  @Test func aRefusedConnectFromAFiberNamesTheHostAndPort() throws {
    let loop = try makeLoop(.automatic)
    let port = try Self.freePort()
    let error = try loop.runFiberUntilComplete { () throws -> TinyAsyncError? in
      do throws(TinyAsyncError) {
        _ = try TCPConnection.connect(host: "::1", port: port)
        return nil
      } catch {
        return error
      }
    }
    // ::1 refuses, or is not there at all (no IPv6 here): both name it.
    #expect(error?.context == "connect to [::1]:\(port)")
    #expect("\(error.map { "\($0)" } ?? "")".contains("connect to [::1]:\(port)"))
  }

  @Test func aNameThatDoesNotResolveIsNamed() throws {
    let loop = try makeLoop(.automatic)
    let error = try loop.runUntilComplete { () async throws -> TinyAsyncError? in
      do throws(TinyAsyncError) {
        // No resolver here may mean EAGAIN, or no answer: bound the wait.
        _ = try await TCPConnection.connect(host: "no-such-host.invalid", port: 80, timeout: .seconds(5))
        return nil
      } catch {
        return error
      }
    }
    let found = try #require(error)
    #expect(found.context == "connect to no-such-host.invalid:80")
    if found == .hostNotFound {
      #expect("\(found)" == "host not found: connect to no-such-host.invalid:80")
    } else {
      print("SKIP: no resolver answers here (\(found)); the context is checked, not the case")
    }
  }

  @Test(arguments: backends)
  func aPortInUseIsNamed(_ backend: EventLoop.Backend) throws {
    let loop = try makeLoop(backend)
    try loop.runUntilComplete {
      let first = try TCPListener(host: "127.0.0.1", port: 0)
      defer { first.close() }
      do throws(TinyAsyncError) {
        _ = try TCPListener(host: "127.0.0.1", port: first.port)
        Issue.record("a second listener on a taken port")
      } catch .addressInUse(let context) {
        #expect(context == "listen on 127.0.0.1:\(first.port)")
      }
      #expect(throws: TinyAsyncError.addressInUse) { _ = try TCPListener(host: "127.0.0.1", port: first.port) }
    }
  }

  @Test func portsOutOfRangeAreRefusedWithTheValueNamed() throws {
    let loop = try makeLoop(.automatic)
    try loop.runUntilComplete {
      for port in [70000, -1] {
        let detail = "port \(port) is out of range 0...65535"
        let refusals: [(String, () async throws(TinyAsyncError) -> Void)] = [
          ("listen on 127.0.0.1", { () throws(TinyAsyncError) in _ = try TCPListener(host: "127.0.0.1", port: port) }),
          ("connect to 127.0.0.1", { () async throws(TinyAsyncError) in _ = try await TCPConnection.connect(host: "127.0.0.1", port: port) }),
          ("address 127.0.0.1", { () throws(TinyAsyncError) in _ = try SocketAddress(host: "127.0.0.1", port: port) }),
          ("address 127.0.0.1", { () throws(TinyAsyncError) in _ = try UDPSocket(host: "127.0.0.1", port: port) }),
        ]
        for (context, call) in refusals {
          do throws(TinyAsyncError) {
            try await call()
            Issue.record("\(context): port \(port) accepted")
          } catch {
            #expect(error.detail == detail)
            #expect(error.context == context)
            #expect("\(error)" == "invalid setting: \(context): \(detail)")
          }
        }
      }
    }
    // The fiber form too.
    let error = try loop.runFiberUntilComplete { () throws -> TinyAsyncError? in
      do throws(TinyAsyncError) {
        _ = try TCPConnection.connect(host: "localhost", port: 70000)
        return nil
      } catch {
        return error
      }
    }
    #expect(error.map { "\($0)" } == "invalid setting: connect to localhost: port 70000 is out of range 0...65535")
  }

  @Test func unixSocketErrorsNameThePath() throws {
    let loop = try makeLoop(.automatic)
    let missing = "/tmp/tinyasync-no-such-socket-\(getpid())"
    let long = "/tmp/" + String(repeating: "x", count: 120)
    try loop.runUntilComplete {
      do throws(TinyAsyncError) {
        _ = try await TCPConnection.connect(unixPath: missing)
        Issue.record("connected to a missing socket")
      } catch {
        #expect(error.errno == ENOENT)
        #expect("\(error)" == "connect to unix:\(missing): \(String(cString: strerror(ENOENT))) (errno \(ENOENT))")
      }
      do throws(TinyAsyncError) {
        _ = try TCPListener(unixPath: long)
        Issue.record("listened on a path over 107 bytes")
      } catch {
        #expect(error.errno == ENAMETOOLONG)
        #expect(error.context == "listen on unix:\(long)")
      }
    }
  }

  /// A zero connect timeout fails before any socket is made, and says
  /// where it would have gone.
  @Test func aConnectTimeoutNamesTheAddress() throws {
    let loop = try makeLoop(.automatic, clock: .manual)
    try loop.runUntilComplete {
      do throws(TinyAsyncError) {
        _ = try await TCPConnection.connect(host: "10.0.0.7", port: 5432, timeout: .zero)
        Issue.record("connected in no time")
      } catch .timedOut(let context) {
        #expect(context == "connect to 10.0.0.7:5432")
      }
    }
  }

  // MARK: UDP

  @Test(arguments: backends)
  func udpErrorsNameTheAddress(_ backend: EventLoop.Backend) throws {
    let loop = try makeLoop(backend)
    try loop.runUntilComplete {
      let a = try UDPSocket(host: "127.0.0.1", port: 0)
      let b = try UDPSocket(host: "127.0.0.1", port: 0)
      defer { a.close(); b.close() }
      let bPort = try b.port
      do throws(TinyAsyncError) {
        try await a.send([UInt8](repeating: 0, count: 65508), to: try b.localAddress)
        Issue.record("a datagram over 65,507 bytes was sent")
      } catch {
        #expect(error.errno == EMSGSIZE)
        #expect(error.context == "send to 127.0.0.1:\(bPort)")
      }
      do throws(TinyAsyncError) {
        _ = try UDPSocket(host: "127.0.0.1", port: bPort)
        Issue.record("bound a taken UDP port")
      } catch {
        #expect(error == .addressInUse)
        #expect("\(error)".hasPrefix("address in use: bind UDP to 127.0.0.1:\(bPort): "))
      }
      do throws(TinyAsyncError) {
        _ = try SocketAddress(host: "localhost", port: 53)
        Issue.record("a name parsed as an address")
      } catch {
        #expect(error.errno == EINVAL)
        #expect(error.context?.contains("\"localhost\"") == true)
      }
    }
  }

  // MARK: Files and processes

  @Test(arguments: backends)
  func fileErrorsNameTheOperationAndThePath(_ backend: EventLoop.Backend) throws {
    let loop = try makeLoop(backend)
    let missing = "/tmp/tinyasync-no-such-file-\(getpid())"
    try loop.runUntilComplete {
      do throws(TinyAsyncError) {
        _ = try await File.open(missing)
        Issue.record("opened a missing file")
      } catch {
        #expect(error == .system(errno: ENOENT, message: String(cString: strerror(ENOENT))))  // context ignored
        #expect("\(error)" == "open \(missing): \(String(cString: strerror(ENOENT))) (errno \(ENOENT))")
      }
      let folder = try await File.open("/tmp")
      do throws(TinyAsyncError) {
        _ = try await folder.read(at: 0, count: 1)
        Issue.record("read a folder")
      } catch {
        #expect(error.errno == EISDIR)
        #expect(error.context == "read /tmp")
      }
      try await folder.close()
    }
    let fiberError = try loop.runFiberUntilComplete { () throws -> TinyAsyncError? in
      do throws(TinyAsyncError) {
        _ = try File.open(missing)
        return nil
      } catch {
        return error
      }
    }
    #expect(fiberError?.context == "open \(missing)")
  }

  @Test func aProgramThatCannotStartIsNamed() throws {
    let loop = try makeLoop(.automatic)
    try loop.runUntilComplete {
      do throws(TinyAsyncError) {
        _ = try ChildProcess.spawn("/no/such/program-tinyasync")
        Issue.record("spawned a missing program")
      } catch {
        #expect(error.errno == ENOENT)
        #expect("\(error)" == "spawn /no/such/program-tinyasync: \(String(cString: strerror(ENOENT))) (errno \(ENOENT))")
      }
    }
  }

  // MARK: Matching and equality

  @Test func theContextChangesNoMatchAndNoEquality() {
    let refused = TinyAsyncError(code: -ECONNREFUSED, context: "connect to 127.0.0.1:9")
    #expect(refused == .connectionRefused)
    #expect(refused == TinyAsyncError(code: -ECONNREFUSED, context: "connect to 10.0.0.1:80"))
    #expect(refused != .connectionReset)
    #expect(Set([refused, .connectionRefused, TinyAsyncError.connectionRefused.with(context: "x")]).count == 1)
    #expect(TinyAsyncError.system(errno: ENOENT, message: "m", context: "open /a") == .system(errno: ENOENT, message: "m"))
    #expect(TinyAsyncError.system(errno: ENOENT, message: "m") != .system(errno: EACCES, message: "m"))
    #expect(refused.errno == ECONNREFUSED)
    #expect(refused.message == String(cString: strerror(ECONNREFUSED)))
    #expect(refused.detail == nil)

    // The patterns of before: typed catch, a cast catch, an exhaustive switch.
    func fail() throws(TinyAsyncError) { throw refused }
    func failUntyped() throws { throw refused }
    var seen: [String] = []
    do { try fail() } catch .connectionRefused { seen.append("typed") } catch { seen.append("other") }
    do { try failUntyped() } catch TinyAsyncError.connectionRefused { seen.append("cast") } catch { seen.append("other") }
    switch refused {
    case .connectionRefused(let context): seen.append(context ?? "none")
    case .cancelled, .timedOut, .connectionReset, .brokenPipe, .addressInUse, .hostNotFound, .closed,
      .delimiterNotFound, .backendUnavailable, .outOfMemory, .deadlocked, .invalidSetting, .system, .library:
      seen.append("other")
    }
    #expect(seen == ["typed", "cast", "connect to 127.0.0.1:9"])

    // A context already there stays: the innermost call knows best.
    #expect(refused.with(context: "outer").context == "connect to 127.0.0.1:9")
    #expect(TinyAsyncError.cancelled.context == nil)
    #expect("\(TinyAsyncError.hostNotFound)" == "host not found")
  }
}

/// The shape of code that a struct-shaped `TinyAsyncError` (matched through
/// `~=`) crashed Swift 6.3.1 on (signal 11 in `MandatoryAllocBoxToStack`):
/// a `catch` of one case, inside a loop, in a function that throws
/// `any Error`. That this file compiles is the test.
func echoLinesShape(_ connection: TCPConnection, maxLine: Int) async throws {
  for _ in 0..<2 {
    let line: [UInt8]
    do {
      line = try await connection.read(until: UInt8(ascii: "\n"), max: maxLine)
    } catch .delimiterNotFound {
      try await connection.write("ERROR line longer than \(maxLine) bytes\n")
      return
    }
    if line.isEmpty { return }
    try await connection.write(line)
  }
}
