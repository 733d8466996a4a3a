import Glibc
import TinyAsync

/// `--loops N` (N > 1): the same echo on an EventLoopGroup, one loop per
/// thread, each with a listener of its own on the port (SO_REUSEPORT), so
/// the kernel spreads the connections; with `--acceptor`, one listener on
/// loop 0 hands them out round-robin. SIGTERM and SIGINT are blocked
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
  let distribution: EventLoopGroup.ConnectionDistribution = options.acceptor ? .acceptor : .reusePort
  let port: Int
  if options.fibers {
    // The fiber front: each connection a fiber on the loop that serves it.
    port = try group.serveFibers(host: options.host, port: options.port, backlog: 4096, distribution: distribution) {
      { connection in
        // A reset or vanished peer ends this connection only.
        try? options.lines ? echoLines(connection, maxLine: options.maxLine) : echoBytes(connection)
      }
    }
  } else {
    port = try group.serve(host: options.host, port: options.port, backlog: 4096, distribution: distribution) {
      { connection in
        try? await options.lines ? echoLines(connection, maxLine: options.maxLine) : echoBytes(connection)
      }
    }
  }
  printError("tinyasync-echo: \(options.fibers ? "fibers" : "async") on \(group.loops.count) loops (\(group.loops[0].backend), \(options.acceptor ? "one acceptor" : "SO_REUSEPORT")), \(options.host):\(port)\(options.lines ? ", lines up to \(options.maxLine) bytes" : "")")
  print("READY")
  fflush(nil)  // READY must reach a pipe at once
  var signal: Int32 = 0
  sigwait(&stops, &signal)
  printError("tinyasync-echo: signal \(signal): stopping")
  try group.shutdown(deadline: options.drain)
}
