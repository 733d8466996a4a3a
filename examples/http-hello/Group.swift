import Glibc
import TinyAsync

/// `--loops N` (N > 1): the same server on an EventLoopGroup, one loop per
/// thread, each with a listener of its own on the port (SO_REUSEPORT).
/// Each loop keeps its own `Connections`, made where its handler is made;
/// when the shutdown begins there (`waitForShutdown`), that loop's idle
/// keep-alive connections go and its busy ones finish their request, as on
/// one loop. SIGTERM and SIGINT are blocked before the loops start (their
/// threads inherit the mask) and taken here with sigwait.
func runGroup(_ options: Options) throws {
  var stops = sigset_t()
  sigemptyset(&stops)
  sigaddset(&stops, SIGTERM)
  sigaddset(&stops, SIGINT)
  pthread_sigmask(SIG_BLOCK, &stops, nil)
  let group = try EventLoopGroup(loops: options.loops, backend: options.backend)
  let port = try group.serve(host: options.host, port: options.port, backlog: 4096) {
    let loop = EventLoop.current!
    let connections = Connections()  // this loop's
    loop.spawn(name: "stopper") {
      try await group.waitForShutdown()
      connections.stopping = true
      for (_, entry) in connections.tasks where entry.idle && entry.connection.bufferedCount == 0 {
        entry.task.cancel()
      }
    }
    return { connection in
      // A task of its own, which the stopper can cancel while it is idle.
      let id = ObjectIdentifier(connection)
      let task = loop.spawn(name: "http connection") {
        try await serve(connection, connections, file: options.file)
      }
      connections.tasks[id] = (task, connection, false)
      _ = try? await task.value  // a reset or vanished client ends its own connection only
      connections.tasks[id] = nil
    }
  }
  printError("tinyasync-http-hello: \(group.loops.count) loops on \(group.loops[0].backend), http://\(options.host):\(port)/")
  print("READY")
  fflush(nil)  // READY must reach a pipe at once
  var signal: Int32 = 0
  sigwait(&stops, &signal)
  printError("tinyasync-http-hello: signal \(signal): stopping")
  try group.shutdown(deadline: options.drain)
}
