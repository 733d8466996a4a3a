internal import CLoop
internal import Glibc

/// A listening TCP socket on an ``EventLoop``: bound at creation, it hands
/// out the connections that arrive, one ``accept()-753tx`` at a time or as an
/// `AsyncSequence`.
///
/// Port 0 picks a free port; ``port`` says which. Loop-confined (not
/// `Sendable`); closes its socket when it goes away. Iterating it ends when
/// the listener is closed; running out of file descriptors pauses the
/// iteration briefly (and logs a warning) instead of ending it.
///
/// ```swift
/// try EventLoop.run {
///     let loop = EventLoop.current!
///     let listener = try TCPListener(host: "127.0.0.1", port: 0)
///     print("listening on port \(listener.port)")
///     for try await connection in listener {
///         loop.spawn {  // an echo per connection
///             while true {
///                 let bytes = try await connection.read(max: 4096)
///                 if bytes.isEmpty { break }
///                 try await connection.write(bytes)
///             }
///         }
///     }
/// }
/// ```
public final class TCPListener {
  /// The loop the listener belongs to.
  public let loop: EventLoop
  /// The port it listens on (the one picked, if it was created with 0);
  /// 0 for a Unix socket.
  public let port: Int
  /// The socket, or -1 once closed.
  private(set) var fd: Int32
  /// An acceptor for the next ``AcceptWait`` (one is in use at a time, but
  /// an interrupted one may still wait for its C callback).
  private var spareAcceptor: UnsafeMutablePointer<cloop_acceptor>?
  /// Connections accepted as an accept was interrupted, for the next one.
  var kept: [Int32] = []
  var isAccepting = false

  /// Binds to `host`:`port` and listens (with `SO_REUSEADDR`).
  ///
  /// - Parameters:
  ///   - host: A numeric IPv4 or IPv6 address (`"127.0.0.1"`, `"::1"`,
  ///     `"0.0.0.0"` for every IPv4 interface), `"localhost"` (the IPv4
  ///     loopback), or a name, which is looked up before listening (once,
  ///     blocking the loop for as long as the lookup takes).
  ///   - port: 0 to let the system pick a free one.
  ///   - backlog: How many connections may wait to be accepted (the
  ///     system caps it at `net.core.somaxconn`).
  ///   - reusePort: Sets `SO_REUSEPORT`, so several listeners (one per
  ///     loop and thread) can share the port.
  ///   - loop: The loop to serve on; by default the one running here.
  /// - Throws: ``TinyAsyncError/addressInUse`` when the port is taken,
  ///   ``TinyAsyncError/hostNotFound`` for a host that is not an address,
  ///   other system errors (e.g. `EACCES` for a privileged port).
  public init(
    host: String = "127.0.0.1", port: Int = 0, backlog: Int = 511, reusePort: Bool = false,
    on loop: EventLoop? = nil
  ) throws(TinyAsyncError) {
    let loop = loop ?? EventLoop.running(for: "TCPListener()")
    loop.checkThread("TCPListener()")
    try TinyAsyncError.checkPort(port, "listen on \(host)")
    let fd = try TinyAsyncError.check(
      cloop_tcp_listen(host, Int32(port), Int32(clamping: backlog), reusePort ? Int32(CLOOP_REUSEPORT) : 0),
      "listen on \(TinyAsyncError.endpoint(host, port))")
    let bound = cloop_sock_port(fd)
    if bound < 0 {
      _ = Glibc.close(fd)
      throw TinyAsyncError(code: bound, context: "listen on \(TinyAsyncError.endpoint(host, port))")
    }
    self.loop = loop
    self.fd = fd
    self.port = Int(bound)
  }

  /// Listens on a Unix domain stream socket at `path`, or `"@name"` for a
  /// Linux abstract name (no file). Its connections are ``TCPConnection``s
  /// like a TCP listener's: one type for both kinds of stream, as asyncio's
  /// streams and NIO's channels are, so a server is written once.
  ///
  /// - Parameters:
  ///   - path: The socket file's path (at most 107 bytes; a longer one is
  ///     an error, never cut short), or `"@name"`.
  ///   - replaceStale: Takes over a socket file a dead server left (one
  ///     that nobody listens on); a live server's is never taken.
  ///   - backlog: How many connections may wait to be accepted.
  ///   - loop: The loop to serve on; by default the one running here.
  /// - Throws: ``TinyAsyncError/addressInUse`` when the path is taken (by
  ///   a live server, or a stale file without `replaceStale`), `ENAMETOOLONG`,
  ///   `EACCES`, `ENOENT` (no such folder).
  ///
  /// ```swift
  /// try EventLoop.run {
  ///     let listener = try TCPListener(unixPath: "/tmp/app.sock", replaceStale: true)
  ///     for try await connection in listener { connection.close() }
  /// }
  /// ```
  public init(
    unixPath path: String, replaceStale: Bool = false, backlog: Int = 511, on loop: EventLoop? = nil
  ) throws(TinyAsyncError) {
    let loop = loop ?? EventLoop.running(for: "TCPListener(unixPath:)")
    loop.checkThread("TCPListener(unixPath:)")
    let fd = try TinyAsyncError.check(
      cloop_unix_listen(path, Int32(clamping: backlog), replaceStale ? Int32(CLOOP_UNLINK_STALE) : 0),
      "listen on unix:\(path)")
    self.loop = loop
    self.fd = fd
    self.port = 0
    self.unixPath = path
  }

  deinit {
    // No accept is in flight: its wait holds the listener until its
    // callback has run.
    close()
    spareAcceptor?.deallocate()
  }

  /// The Unix socket path (or `"@name"`) it listens on, or `nil` for TCP.
  /// The socket file stays after ``close()``: remove it when done (an
  /// abstract name leaves nothing).
  public private(set) var unixPath: String? = nil

  /// Waits for the next connection and returns it.
  ///
  /// - Throws: ``TinyAsyncError/closed`` when the listener is (or gets)
  ///   closed, ``TinyAsyncError/cancelled``, ``TinyAsyncError/timedOut``
  ///   (a connection that arrives just then is kept for the next accept);
  ///   out of file descriptors or memory, `EMFILE`, `ENFILE`, `ENOBUFS` or
  ///   ``TinyAsyncError/outOfMemory`` after a 10 ms pause, so a loop that
  ///   retries does not spin.
  public func accept() async throws(TinyAsyncError) -> TCPConnection {
    loop.checkThread("TCPListener.accept()")
    guard fd >= 0 else { throw .closed }
    ensure(!isAccepting, "TCPListener.accept: another task is accepting on this listener")
    if !kept.isEmpty { return TCPConnection(fd: kept.removeFirst(), loop: loop) }
    isAccepting = true
    defer { isAccepting = false }
    let newFD = try await AcceptWait(listener: self).wait().get()
    return TCPConnection(fd: newFD, loop: loop)
  }

  /// Called by an interrupted ``AcceptWait`` whose connection came anyway.
  func keepAccepted(_ fd: Int32) {
    if self.fd < 0 {
      _ = cloop_close_fd(loop.cLoop, fd)  // closed meanwhile: nobody will accept it
    } else {
      kept.append(fd)
    }
  }

  /// An acceptor for an ``AcceptWait``: the spare, or a new one.
  func takeAcceptor() -> UnsafeMutablePointer<cloop_acceptor> {
    if let spare = spareAcceptor {
      spareAcceptor = nil
      return spare
    }
    let acceptor = UnsafeMutablePointer<cloop_acceptor>.allocate(capacity: 1)
    acceptor.initialize(to: cloop_acceptor())
    return acceptor
  }

  /// Takes back an acceptor whose wait is over (its C callback has run).
  func giveBack(_ acceptor: UnsafeMutablePointer<cloop_acceptor>) {
    if spareAcceptor == nil { spareAcceptor = acceptor } else { acceptor.deallocate() }
  }

  /// Stops listening: a task waiting in ``accept()-753tx`` wakes with
  /// ``TinyAsyncError/closed`` (an iteration ends). Connections already
  /// accepted stay open. Closing again does nothing.
  public func close() {
    loop.checkThread("TCPListener.close()")
    guard fd >= 0 else { return }
    let fd = self.fd
    self.fd = -1
    _ = cloop_close_fd(loop.cLoop, fd)
    for kept in kept { _ = cloop_close_fd(loop.cLoop, kept) }
    kept.removeAll()
  }

  /// `true` once ``close()`` was called.
  public var isClosed: Bool {
    loop.checkThread("TCPListener.isClosed")
    return fd < 0
  }
}

@available(*, unavailable, message: "a TCPListener belongs to its loop's thread")
extension TCPListener: Sendable {}

extension TCPListener: AsyncSequence {
  /// Each element is an accepted connection.
  public typealias Element = TCPConnection
  /// Iterating throws only ``TinyAsyncError``.
  public typealias Failure = TinyAsyncError

  /// An iterator over the connections as they arrive.
  public func makeAsyncIterator() -> Iterator {
    Iterator(listener: self)
  }

  /// Accepts connection after connection; `nil` once the listener is
  /// closed. A shortage of file descriptors or memory (`EMFILE`, `ENFILE`,
  /// `ENOBUFS`, `ENOMEM`) is waited out, as asyncio's server does, and
  /// logged twice: when it starts, and with a count when it is over; other
  /// errors, cancellation and timeouts are thrown.
  ///
  /// ```swift
  /// var connections = listener.makeAsyncIterator()
  /// while let connection = try await connections.next() {
  ///     connection.close()
  /// }
  /// ```
  public struct Iterator: AsyncIteratorProtocol {
    /// An accepted connection.
    public typealias Element = TCPConnection
    /// Only ``TinyAsyncError``.
    public typealias Failure = TinyAsyncError

    let listener: TCPListener
    /// A shortage of descriptors or memory, logged once while it lasts.
    private var shortage = RepeatedWarning()

    init(listener: TCPListener) {
      self.listener = listener
    }

    /// The next connection, or `nil` once the listener is closed.
    public mutating func next() async throws(TinyAsyncError) -> TCPConnection? {
      while true {
        do {
          let connection = try await listener.accept()
          shortage.ended(at: listener.loop.now, logger: listener.loop.loopLogger, "TCPListener on port \(listener.port): accept")
          return connection
        } catch .closed {
          return nil
        } catch {
          switch error {
          case .outOfMemory:
            break
          case .system(let code, _, _) where code == EMFILE || code == ENFILE || code == ENOBUFS:
            break
          default:
            throw error
          }
          // The C acceptor has paused 10 ms already: no spin, and one log
          // line for the episode, not one per retry.
          let port = listener.port
          shortage.occurred(at: listener.loop.now, logger: listener.loop.loopLogger, "TCPListener on port \(port): accept failed, retrying every 10 ms: \(error)")
        }
      }
    }
  }
}

@available(*, unavailable, message: "a TCPListener belongs to its loop's thread")
extension TCPListener.Iterator: Sendable {}
