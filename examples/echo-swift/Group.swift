import Glibc
import TinyAsync

/// `--loops N` (N > 1): the same echo on an EventLoopGroup, one loop per
/// thread, each with a listener of its own on the port (SO_REUSEPORT), so
/// the kernel spreads the connections. SIGTERM and SIGINT are blocked
/// before the loops start (their threads inherit the mask) and taken here
/// with sigwait; the shutdown closes every loop's listener and gives the
/// connections in flight --drain-seconds, as the one-loop server does.
func serveGroup(_ options: EchoOptions) throws {
  var stops = sigset_t()
  sigemptyset(&stops)
  sigaddset(&stops, SIGTERM)
  sigaddset(&stops, SIGINT)
  pthread_sigmask(SIG_BLOCK, &stops, nil)
  let group = try EventLoopGroup(loops: options.loops, backend: options.backend)
  let port = try group.serve(host: options.host, port: options.port, backlog: 4096) {
    { connection in
      do {
        if options.fibers {
          // The fiber front: each connection a fiber on the loop that
          // accepted it; its task waits for it.
          try await EventLoop.current!.spawnFiber(name: "connection") {
            options.lines ? try echoLines(connection, maxLine: options.maxLine) : try echoBytes(connection)
          }.value
        } else if options.lines {
          try await echoLines(connection, maxLine: options.maxLine)
        } else {
          try await echoBytes(connection)
        }
      } catch {
        // A reset or vanished peer ends this connection only.
      }
    }
  }
  printError("tinyasync-echo: \(options.fibers ? "fibers" : "async") on \(group.loops.count) loops (\(group.loops[0].backend)), \(options.host):\(port)\(options.lines ? ", lines up to \(options.maxLine) bytes" : "")")
  print("READY")
  fflush(nil)  // READY must reach a pipe at once
  var signal: Int32 = 0
  sigwait(&stops, &signal)
  printError("tinyasync-echo: signal \(signal): stopping")
  try group.shutdown(deadline: options.drain)
}
