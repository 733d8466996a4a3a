import Glibc
import TinyAsync

struct EchoOptions {
  var host = "127.0.0.1"
  var port = 8888
  var fibers = false
  var backend = EventLoop.Backend.automatic
  var lines = false
  var maxLine = 8192
  var drain: Duration = .seconds(5)
  /// Loops, each on a thread of its own (Group.swift); nil: one per CPU
  /// of the affinity mask (`EventLoopGroup`'s default); 1: one loop on the
  /// main thread, as the benchmarks run it.
  var loops: Int? = nil
  /// With loops > 1: one acceptor handing connections out, not SO_REUSEPORT.
  var acceptor = false
}

func usage(_ problem: String?) -> Never {
  if let problem { printError("tinyasync-echo: \(problem)") }
  printError("usage: tinyasync-echo [--port P] [--host H] [--mode async|fiber] [--backend auto|epoll|uring] [--lines [--max-line N]] [--drain-seconds S] [--loops N [--acceptor]]")
  exit(problem == nil ? 0 : 2)
}

/// A line on standard error (Glibc's `stderr` is a global Swift 6 will
/// not touch from here).
func printError(_ line: String) {
  let text = line + "\n"
  _ = text.withCString { write(2, $0, strlen($0)) }
}

/// The most one read takes: what asyncio (256 KiB) reads at a time.
let readSize = 256 * 1024

/// The connections being served, for the graceful stop (loop thread only).
final class Connections {
  var live = 0
}

func serve(_ options: EchoOptions) throws {
  if options.loops != 1 { return try serveGroup(options) }
  let loop = try EventLoop(backend: options.backend)
  let listener = try TCPListener(host: options.host, port: options.port, backlog: 4096, on: loop)
  // SIGTERM and SIGINT arrive as events of the loop from here on.
  let stops = try loop.signals(.terminate, .interrupt)
  printError("tinyasync-echo: \(options.fibers ? "fibers" : "async") on \(loop.backend), \(options.host):\(listener.port)\(options.lines ? ", lines up to \(options.maxLine) bytes" : "")")
  print("READY")
  fflush(nil)  // READY must reach a pipe at once
  if options.fibers {
    try loop.runFiberUntilComplete { try serveFibers(listener, stops, options) }
  } else {
    try loop.runUntilComplete { try await serveAsync(listener, stops, options) }
  }
}

// MARK: The async front

/// Serves until SIGTERM or SIGINT; then stops accepting, gives the
/// connections in flight `options.drain` to finish, and returns (which
/// cancels what is left).
func serveAsync(_ listener: TCPListener, _ stops: SignalStream, _ options: EchoOptions) async throws {
  let loop = listener.loop
  let connections = Connections()
  loop.spawn(name: "acceptor") {
    // Out of descriptors, the iteration pauses and retries by itself; it
    // ends when the listener is closed.
    for try await connection in listener {
      connections.live += 1
      loop.spawn(name: "connection") {
        defer {
          connection.close()
          connections.live -= 1
        }
        do {
          if options.lines {
            try await echoLines(connection, maxLine: options.maxLine)
          } else {
            try await echoBytes(connection)
          }
        } catch {
          // A reset or vanished peer ends this connection only.
        }
      }
    }
  }
  if let signal = try await stops.next() {
    printError("tinyasync-echo: \(signal): stopping, \(connections.live) connection(s) in flight")
  }
  listener.close()
  let deadline = loop.now + options.drain
  while connections.live > 0 && loop.now < deadline {
    try await sleep(for: .milliseconds(10))
  }
  if connections.live > 0 {
    printError("tinyasync-echo: \(connections.live) connection(s) left after the drain: closing them")
  }
  stops.close()
}

func echoBytes(_ connection: TCPConnection) async throws {
  // Grows to what the reads bring (64 bytes for a short message, up to
  // readSize for a stream) and keeps that capacity: reserving readSize
  // up front would cost every connection 256 KiB of heap.
  var buffer: [UInt8] = []
  while true {
    buffer.removeAll(keepingCapacity: true)
    if try await connection.read(into: &buffer, max: readSize) == 0 { return }
    try await connection.write(buffer)
  }
}

func echoLines(_ connection: TCPConnection, maxLine: Int) async throws {
  while true {
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

// MARK: Fibers

/// The fibers' twin of ``serveAsync``: the same graceful stop.
func serveFibers(_ listener: TCPListener, _ stops: SignalStream, _ options: EchoOptions) throws {
  let loop = listener.loop
  let connections = Connections()
  loop.spawnFiber(name: "acceptor") {
    while true {
      let connection: TCPConnection
      do {
        connection = try listener.accept()
      } catch let error as TinyAsyncError {
        if error == .closed { return }  // stopping
        if error.errno == EMFILE || error.errno == ENFILE { continue }  // accept paused 10 ms
        throw error
      }
      connections.live += 1
      loop.spawnFiber(name: "connection") {
        defer {
          connection.close()
          connections.live -= 1
        }
        do {
          if options.lines {
            try echoLines(connection, maxLine: options.maxLine)
          } else {
            try echoBytes(connection)
          }
        } catch {
          // A reset or vanished peer ends this connection only.
        }
      }
    }
  }
  if let signal = try stops.next() {
    printError("tinyasync-echo: \(signal): stopping, \(connections.live) connection(s) in flight")
  }
  listener.close()
  let deadline = loop.now + options.drain
  while connections.live > 0 && loop.now < deadline {
    try sleep(for: .milliseconds(10))
  }
  if connections.live > 0 {
    printError("tinyasync-echo: \(connections.live) connection(s) left after the drain: closing them")
  }
  stops.close()
}

func echoBytes(_ connection: TCPConnection) throws {
  var buffer: [UInt8] = []  // grows as the async twin's does
  while true {
    buffer.removeAll(keepingCapacity: true)
    if try connection.read(into: &buffer, max: readSize) == 0 { return }
    try connection.write(buffer)
  }
}

func echoLines(_ connection: TCPConnection, maxLine: Int) throws {
  while true {
    let line: [UInt8]
    do {
      line = try connection.read(until: UInt8(ascii: "\n"), max: maxLine)
    } catch .delimiterNotFound {
      try connection.write("ERROR line longer than \(maxLine) bytes\n")
      return
    }
    if line.isEmpty { return }
    try connection.write(line)
  }
}
