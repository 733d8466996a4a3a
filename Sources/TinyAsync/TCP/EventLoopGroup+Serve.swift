import Synchronization

extension EventLoopGroup {
  /// Listens on `host`:`port` on every loop of the group, each loop with a
  /// ``TCPListener`` of its own (`SO_REUSEPORT`: the kernel spreads the
  /// connections over them), and serves each connection on the loop that
  /// accepted it, in a task spawned there. Returns the port (the one
  /// picked, for port 0: the first loop binds, the others take its port).
  ///
  /// `makeHandler` is called once on each loop's thread and gives that
  /// loop's handler: a connection is not `Sendable`, so the function that
  /// serves it is made where it runs, and may keep loop-confined state of
  /// its loop (a count, a cache) in its closure. The connection is closed
  /// when its handler returns.
  ///
  /// The listeners close at ``shutdown(deadline:)``, before the drain;
  /// connections being served get the drain's deadline, then are cancelled.
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
    _ makeHandler: @escaping @Sendable () -> (TCPConnection) async -> Void
  ) throws(TinyAsyncError) -> Int {
    if let current = EventLoop.current {
      let which = index(of: current).map { "the group's loop \($0)" } ?? "a running EventLoop"
      misuse("EventLoopGroup.serve(host:port:backlog:_:) was called on \(which): it blocks until every loop of the group listens, which would stall that loop (or wait for itself); call it from a thread that runs no loop, e.g. the one that made the group")
    }
    let serveID = Self.serveCount.add(1, ordering: .relaxed).newValue
    var bound = port
    for (index, loop) in loops.enumerated() {
      let latch = ThreadLatch<Result<Int, TinyAsyncError>>()
      let member = members[index]
      let portToBind = bound
      let sent = loop.internalThreadSafeHandle.call { loop in
        latch.post(Result { () throws(TinyAsyncError) -> Int in
          try Self.listen(on: loop, member.value, serve: serveID, host: host, port: portToBind, backlog: backlog, makeHandler)
        })
      }
      let result = sent ? latch.wait() : .failure(.closed)
      switch result {
      case .success(let port): bound = port
      case .failure(let error):
        for loop in loops[..<index] {
          let member = members[self.index(of: loop)!]
          loop.internalThreadSafeHandle.call { member.value.closeListeners(serve: serveID) }
        }
        throw error
      }
    }
    return bound
  }

  /// Numbers the calls of ``serve(host:port:backlog:_:)``, so that a failed
  /// one closes only its own listeners.
  private static let serveCount = Atomic<Int>(0)

  /// On `loop`'s thread: its listener, and the task that accepts on it.
  private static func listen(
    on loop: EventLoop, _ member: GroupMember, serve: Int, host: String, port: Int, backlog: Int,
    _ makeHandler: @Sendable () -> (TCPConnection) async -> Void
  ) throws(TinyAsyncError) -> Int {
    guard !member.isStopping else { throw .closed }
    let listener = try TCPListener(host: host, port: port, backlog: backlog, reusePort: true, on: loop)
    member.add(listener, serve: serve)
    let handler = makeHandler()
    loop.spawn(name: "acceptor :\(listener.port)") {
      // Ends when the listener closes (shutdown); a shortage of
      // descriptors pauses the iteration, which retries by itself.
      for try await connection in listener {
        loop.spawn(name: "connection") {
          defer { connection.close() }
          await handler(connection)
        }
      }
    }
    return listener.port
  }
}
