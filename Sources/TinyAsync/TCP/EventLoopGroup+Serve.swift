internal import Glibc
import Synchronization

extension EventLoopGroup {
  /// How ``EventLoopGroup/serve(host:port:backlog:distribution:_:)`` and
  /// ``EventLoopGroup/serveFibers(host:port:backlog:distribution:_:)``
  /// spread the connections over the loops.
  ///
  /// ```swift
  /// let group = try EventLoopGroup(loops: 4)
  /// // One socket, accepted on loop 0, handed round-robin to all four:
  /// try group.serve(port: 8080, distribution: .acceptor) {
  ///     { connection in try? await connection.write("hi\n") }
  /// }
  /// ```
  public enum ConnectionDistribution: Sendable, Hashable {
    /// A listener per loop on the same port with `SO_REUSEPORT`: the
    /// kernel spreads the connections by a hash of their addresses, and
    /// each is served where it was accepted, so nothing crosses threads.
    /// The default.
    case reusePort
    /// One listener, on loop 0, which hands each accepted connection to
    /// the next loop round-robin (loop 0 included) through that loop's
    /// thread-safe queue: an even spread and one socket, for setups where
    /// `SO_REUSEPORT` is not wanted, at the price of a hand-off between
    /// threads per connection and of loop 0 doing every accept.
    case acceptor
  }

  /// Listens on `host`:`port` across the group and serves each connection
  /// on one loop, in a task spawned there. Returns the port (the one
  /// picked, for port 0).
  ///
  /// By default (``ConnectionDistribution/reusePort``) every loop has a
  /// ``TCPListener`` of its own (`SO_REUSEPORT`: the kernel spreads the
  /// connections over them; for port 0 the first loop binds and the others
  /// take its port) and a connection is served on the loop that accepted
  /// it; with ``ConnectionDistribution/acceptor`` loop 0 alone listens and
  /// hands the connections round-robin to every loop.
  ///
  /// `makeHandler` is called once on each loop's thread and gives that
  /// loop's handler: a connection is not `Sendable`, so the function that
  /// serves it is made where it runs, and may keep loop-confined state of
  /// its loop (a count, a cache) in its closure. The connection is closed
  /// when its handler returns.
  ///
  /// The listeners close at ``shutdown(deadline:)``, before the drain;
  /// connections being served get the drain's deadline, then are cancelled.
  /// A connection still on its way to a loop that has begun its shutdown
  /// is closed unserved.
  ///
  /// Blocks until every loop listens, so call it from a thread that runs
  /// no loop (the one that made the group, say): from a task or callback it
  /// would stall its loop, and on one of the group's own it would wait for
  /// itself; either stops the program with a message.
  ///
  /// - Throws: What ``TCPListener/init(host:port:backlog:reusePort:on:)``
  ///   throws on the first loop that fails (e.g. ``TinyAsyncError/addressInUse``);
  ///   the listeners already made by this call are closed.
  ///   ``TinyAsyncError/closed`` once the group is shutting down.
  ///
  /// ```swift
  /// let group = try EventLoopGroup()
  /// try group.serve(host: "0.0.0.0", port: 8080) {
  ///     var served = 0  // this loop's count: no lock, no atomic
  ///     return { connection in
  ///         served += 1
  ///         try? await connection.write("hello \(served)\n")
  ///     }
  /// }
  /// ```
  @discardableResult
  public func serve(
    host: String = "127.0.0.1", port: Int = 0, backlog: Int = 511,
    distribution: ConnectionDistribution = .reusePort,
    _ makeHandler: @escaping @Sendable () -> (TCPConnection) async -> Void
  ) throws(TinyAsyncError) -> Int {
    try startServing(
      "EventLoopGroup.serve(host:port:backlog:distribution:_:)", host: host, port: port, backlog: backlog,
      distribution: distribution
    ) { .task(makeHandler()) }
  }

  /// ``serve(host:port:backlog:distribution:_:)`` on the fiber front: each
  /// connection is served by a fiber spawned on its loop (a private stack,
  /// see ``EventLoop/spawnFiber(name:stack:_:)``), whose handler makes
  /// the fiber forms of the blocking-style calls (`TCPConnection.read(max:)`
  /// and the like). The accepting stays a task of each loop; the
  /// listeners, the distribution, the shutdown and the errors are as there.
  ///
  /// ```swift
  /// let group = try EventLoopGroup()
  /// try group.serveFibers(port: 9000) {
  ///     { connection in  // in a fiber of the loop that serves it
  ///         while let bytes = try? connection.read(max: 4096), !bytes.isEmpty {
  ///             try? connection.write(bytes)
  ///         }
  ///     }
  /// }
  /// ```
  @discardableResult
  public func serveFibers(
    host: String = "127.0.0.1", port: Int = 0, backlog: Int = 511,
    distribution: ConnectionDistribution = .reusePort,
    _ makeHandler: @escaping @Sendable () -> (TCPConnection) -> Void
  ) throws(TinyAsyncError) -> Int {
    try startServing(
      "EventLoopGroup.serveFibers(host:port:backlog:distribution:_:)", host: host, port: port,
      backlog: backlog, distribution: distribution
    ) { .fiber(makeHandler()) }
  }

  /// Numbers the calls of `serve` and `serveFibers`, so that a failed one
  /// closes only its own listeners.
  private static let serveCount = Atomic<Int>(0)

  private func startServing(
    _ call: String, host: String, port: Int, backlog: Int, distribution: ConnectionDistribution,
    _ makeHandler: @escaping @Sendable () -> GroupHandler
  ) throws(TinyAsyncError) -> Int {
    if let current = EventLoop.current {
      let which = index(of: current).map { "the group's loop \($0)" } ?? "a running EventLoop"
      misuse("\(call) was called on \(which): it blocks until every loop of the group listens, which would stall that loop (or wait for itself); call it from a thread that runs no loop, e.g. the one that made the group")
    }
    let serveID = Self.serveCount.add(1, ordering: .relaxed).newValue
    let loops = self.loops
    let members = self.members
    let acceptor = distribution == .acceptor
    var bound = port
    // With one acceptor, the loops it hands to get their handler first
    // (loop 0, which listens, comes last), so that none is missing one.
    let order = acceptor ? Array(loops.indices.dropFirst()) + [0] : Array(loops.indices)
    for (done, index) in order.enumerated() {
      let latch = ThreadLatch<Result<Int, TinyAsyncError>>()
      let member = members[index]
      let portToBind = bound
      let listens = !acceptor || index == 0
      let sent = loops[index].internalThreadSafeHandle.call { loop in
        latch.post(Result { () throws(TinyAsyncError) -> Int in
          guard !member.value.isStopping else { throw .closed }
          let handler = makeHandler()
          guard listens else {
            member.value.setHandler(handler, serve: serveID)
            return portToBind
          }
          let listener = try TCPListener(host: host, port: portToBind, backlog: backlog, reusePort: !acceptor, on: loop)
          member.value.add(listener, serve: serveID)
          if acceptor {
            Self.handOut(listener, handler, serve: serveID, to: loops, members)
          } else {
            Self.accept(listener, handler)
          }
          return listener.port
        })
      }
      let result = sent ? latch.wait() : .failure(.closed)
      switch result {
      case .success(let port): bound = port
      case .failure(let error):
        for undo in order[..<done] {
          let member = members[undo]
          loops[undo].internalThreadSafeHandle.call { member.value.closeListeners(serve: serveID) }
        }
        throw error
      }
    }
    return bound
  }

  /// On `listener`'s loop: the task that accepts on it and serves there.
  private static func accept(_ listener: TCPListener, _ handler: GroupHandler) {
    let loop = listener.loop
    loop.spawn(name: "acceptor :\(listener.port)") {
      // Ends when the listener closes (shutdown); a shortage of
      // descriptors pauses the iteration, which retries by itself.
      for try await connection in listener {
        handler.serve(connection, on: loop)
      }
    }
  }

  /// On loop 0: the one acceptor, handing each connection to the next
  /// loop round-robin. Its own turn is served in place; another loop's is
  /// the bare descriptor, sent through that loop's thread-safe queue and
  /// adopted there (a connection is not `Sendable`, a descriptor is).
  private static func handOut(
    _ listener: TCPListener, _ handler: GroupHandler, serve: Int,
    to loops: [EventLoop], _ members: [LoopThreadOnly<GroupMember>]
  ) {
    let loop = listener.loop
    loop.spawn(name: "acceptor :\(listener.port)") {
      var next = 0
      for try await connection in listener {
        let index = next
        next = next == loops.count - 1 ? 0 : next + 1
        if index == 0 {
          handler.serve(connection, on: loop)
          continue
        }
        let parcel = HandedConnection(connection.releaseDescriptor())
        let member = members[index]
        // A loop that has ended drops the closure, and the parcel with it
        // closes the descriptor.
        loops[index].internalThreadSafeHandle.call { loop in
          member.value.receive(parcel, serve: serve, on: loop)
        }
      }
    }
  }
}

/// A loop's connection handler, made on that loop's thread: a task or a
/// fiber per connection.
enum GroupHandler {
  case task((TCPConnection) async -> Void)
  case fiber((TCPConnection) -> Void)

  /// On `loop`'s thread: serves `connection` there and closes it when the
  /// handler returns.
  func serve(_ connection: TCPConnection, on loop: EventLoop) {
    switch self {
    case .task(let handler):
      loop.spawn(name: "connection") {
        defer { connection.close() }
        await handler(connection)
      }
    case .fiber(let handler):
      loop.spawnFiber(name: "connection") {
        defer { connection.close() }
        handler(connection)
      }
    }
  }
}

/// An accepted descriptor on its way from the acceptor's loop to the one
/// that serves it. Whoever takes it owns it; if nobody does (the closure
/// carrying it was dropped by an ended loop), it is closed when the parcel
/// goes, so no descriptor is left behind.
final class HandedConnection: Sendable {
  private let fd: Atomic<Int32>

  init(_ fd: Int32) { self.fd = Atomic(fd) }

  /// The descriptor, once; -1 after.
  func take() -> Int32 { fd.exchange(-1, ordering: .acquiringAndReleasing) }

  deinit {
    let fd = take()
    if fd >= 0 { _ = Glibc.close(fd) }
  }
}
