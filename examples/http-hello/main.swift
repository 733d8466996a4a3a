// tinyasync-http-hello: an HTTP/1.1 server that answers every request with
// "Hello, World!", with keep-alive and pipelining, on the async front; for
// trying TinyAsync under a load generator:
//
//   swift run -c release tinyasync-http-hello --port 8080 &
//   wrk -t1 -c50 -d5s http://127.0.0.1:8080/
//
//   tinyasync-http-hello [--port P] [--host H] [--backend auto|epoll|uring]
//       [--drain-seconds S] [--file PATH] [--loops N]
//
// A task per connection reads a request head with read(until: "\r\n\r\n"),
// drops any Content-Length body, and answers; the next request may already
// be in the buffer (pipelining), which read(until:) keeps. Bad input is
// answered and ends that connection only: a head over 8 KiB gets 431, a
// malformed one 400, a chunked body 501, a body over 1 MiB 413; a client
// silent for 30 s mid-connection is dropped; a reset or vanished client ends
// its own task. GET /file sends the file given with --file, streamed
// (FileRoute.swift). The server prints READY once listening.
//
// On SIGTERM or SIGINT it stops gracefully: it stops accepting, closes the
// idle keep-alive connections, lets the requests in flight get their whole
// answer (with "Connection: close"), and exits 0 -- within --drain-seconds
// (default 5), after which what is left is closed. --loops N (default: one per CPU)
// serves on N loops, one per thread, each listening on the port
// (SO_REUSEPORT; Group.swift).
import Glibc
import TinyAsync

let maxHead = 8192
let maxBody = 1 << 20
let idleTimeout = Duration.seconds(30)
let endOfHead = Array("\r\n\r\n".utf8)
let hello = "Hello, World!"

struct Options {
  var host = "127.0.0.1"
  var port = 8080
  var backend = EventLoop.Backend.automatic
  var drain: Duration = .seconds(5)
  var file: String?
  /// nil: one loop per CPU of the affinity mask; 1: one loop on the main
  /// thread.
  var loops: Int? = nil
}

/// The connections being served, for the graceful stop (loop thread only):
/// each one's task, and whether it is between requests (idle).
final class Connections {
  var stopping = false
  var tasks: [ObjectIdentifier: (task: TaskHandle<Void>, connection: TCPConnection, idle: Bool)] = [:]

  func setIdle(_ connection: TCPConnection, _ idle: Bool) {
    tasks[ObjectIdentifier(connection)]?.idle = idle
  }
}

func usage(_ problem: String?) -> Never {
  if let problem { printError("tinyasync-http-hello: \(problem)") }
  printError("usage: tinyasync-http-hello [--port P] [--host H] [--backend auto|epoll|uring] [--drain-seconds S] [--file PATH] [--loops N]")
  exit(problem == nil ? 0 : 2)
}

func printError(_ line: String) {
  let text = line + "\n"
  _ = text.withCString { write(2, $0, strlen($0)) }
}

/// The bytes of a response: status line, headers, body.
func response(_ status: String, body: String, keepAlive: Bool, version: Substring = "HTTP/1.1", head: Bool = false)
  -> String
{
  var text = "HTTP/1.1 \(status)\r\nContent-Type: text/plain\r\nContent-Length: \(body.utf8.count)\r\n"
  if !keepAlive {
    text += "Connection: close\r\n"
  } else if version == "HTTP/1.0" {
    text += "Connection: keep-alive\r\n"  // 1.0 closes unless told otherwise
  }
  text += "\r\n"
  if !head { text += body }
  return text
}

/// Serves one connection until the client closes it, asks to, errs, or
/// the server stops.
func serve(_ connection: TCPConnection, _ connections: Connections, file: String?) async throws {
  while !connections.stopping {
    let bytes: [UInt8]
    do {
      connections.setIdle(connection, true)
      bytes = try await withTimeout(idleTimeout) {
        try await connection.read(until: endOfHead, max: maxHead)
      }
      connections.setIdle(connection, false)
    } catch TinyAsyncError.delimiterNotFound {
      let status = "431 Request Header Fields Too Large"
      try await connection.write(response(status, body: "request head over \(maxHead) bytes\n", keepAlive: false))
      return
    } catch TinyAsyncError.timedOut {
      return  // idle: drop it
    }
    // End of stream: nothing, or a head cut off by the client's close.
    guard bytes.count >= endOfHead.count, bytes.suffix(endOfHead.count).elementsEqual(endOfHead) else { return }

    let request: RequestHead
    do {
      request = try parseRequestHead(bytes[...])
    } catch {
      try await connection.write(response(error.status, body: error.reason + "\n", keepAlive: false))
      return
    }
    guard request.contentLength <= maxBody else {
      try await connection.write(response("413 Content Too Large", body: "body over \(maxBody) bytes\n", keepAlive: false))
      return
    }
    // Read and drop the body, so the next request starts where it should.
    var left = request.contentLength
    while left > 0 {
      let chunk = try await connection.read(max: min(left, 65536))
      if chunk.isEmpty { return }
      left -= chunk.count
    }
    let keepAlive = request.keepAlive && !connections.stopping
    if request.target == "/file" && (request.method == "GET" || request.method == "HEAD") {
      if try await !serveFile(file, request, on: connection, keepAlive: keepAlive) { return }
      continue
    }
    try await connection.write(
      response("200 OK", body: hello, keepAlive: keepAlive, version: request.version, head: request.method == "HEAD"))
    if !keepAlive { return }
  }
}

func run(_ options: Options) throws {
  if options.loops != 1 { return try runGroup(options) }
  let loop = try EventLoop(backend: options.backend)
  let listener = try TCPListener(host: options.host, port: options.port, backlog: 4096, on: loop)
  printError("tinyasync-http-hello: on \(loop.backend), http://\(options.host):\(listener.port)/")
  print("READY")
  fflush(nil)  // READY must reach a pipe at once
  let stops = try loop.signals(.terminate, .interrupt)
  try loop.runUntilComplete {
    let connections = Connections()
    loop.spawn(name: "acceptor") {
      // Out of descriptors, the iteration pauses and retries by itself; it
      // ends when the listener closes.
      for try await connection in listener {
        let id = ObjectIdentifier(connection)
        let task = loop.spawn(name: "http connection") {
          defer {
            connection.close()
            connections.tasks[id] = nil
          }
          do {
            try await serve(connection, connections, file: options.file)
          } catch {
            // A reset or vanished client ends its own connection only.
          }
        }
        connections.tasks[id] = (task, connection, false)
      }
    }
    if let signal = try await stops.next() {
      printError("tinyasync-http-hello: \(signal): stopping, \(connections.tasks.count) connection(s) open")
    }
    connections.stopping = true
    listener.close()
    // Idle keep-alive connections go now (waiting for a request of which
    // no byte has come); busy ones finish their request.
    for (_, entry) in connections.tasks where entry.idle && entry.connection.bufferedCount == 0 {
      entry.task.cancel()
    }
    let deadline = loop.now + options.drain
    while !connections.tasks.isEmpty && loop.now < deadline {
      try await sleep(for: .milliseconds(10))
    }
    if !connections.tasks.isEmpty {
      printError("tinyasync-http-hello: \(connections.tasks.count) connection(s) left after the drain: closing them")
    }
    stops.close()
  }
}

var options = Options()
var arguments = CommandLine.arguments.dropFirst()
@MainActor func value(after flag: String) -> String {
  guard let value = arguments.popFirst() else { usage("\(flag) needs a value") }
  return value
}
while let argument = arguments.popFirst() {
  switch argument {
  case "--port":
    guard let port = Int(value(after: argument)) else { usage("--port takes a number") }
    options.port = port
  case "--host": options.host = value(after: argument)
  case "--backend":
    switch value(after: argument) {
    case "auto": options.backend = .automatic
    case "epoll": options.backend = .epoll
    case "uring", "io_uring": options.backend = .ioUring
    default: usage("--backend is auto, epoll or uring")
    }
  case "--drain-seconds":
    guard let seconds = Double(value(after: argument)), seconds >= 0 else { usage("--drain-seconds takes a number") }
    options.drain = .milliseconds(Int64(seconds * 1000))
  case "--file": options.file = value(after: argument)
  case "--loops":
    guard let n = Int(value(after: argument)), n > 0 else { usage("--loops takes a positive number") }
    options.loops = n
  case "-h", "--help": usage(nil)
  default: usage("unknown argument \(argument)")
  }
}

do {
  try run(options)
} catch {
  printError("tinyasync-http-hello: \(error)")
  exit(1)
}
