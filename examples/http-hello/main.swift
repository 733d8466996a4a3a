// tinyasync-http-hello: an HTTP/1.1 server that answers every request with
// "Hello, World!", with keep-alive and pipelining, on the async front; for
// trying TinyAsync under a load generator:
//
//   swift run -c release tinyasync-http-hello --port 8080 &
//   wrk -t1 -c50 -d5s http://127.0.0.1:8080/
//
//   tinyasync-http-hello [--port P] [--host H] [--backend auto|epoll|uring]
//
// A task per connection reads a request head with read(until: "\r\n\r\n"),
// drops any Content-Length body, and answers; the next request may already
// be in the buffer (pipelining), which read(until:) keeps. Bad input is
// answered and ends that connection only: a head over 8 KiB gets 431, a
// malformed one 400, a chunked body 501, a body over 1 MiB 413; a client
// silent for 30 s mid-connection is dropped; a reset or vanished client ends
// its own task. The server prints READY once listening and runs until killed.
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
}

func usage(_ problem: String?) -> Never {
  if let problem { printError("tinyasync-http-hello: \(problem)") }
  printError("usage: tinyasync-http-hello [--port P] [--host H] [--backend auto|epoll|uring]")
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

/// Serves one connection until the client closes it, asks to, or errs.
func serve(_ connection: TCPConnection) async throws {
  while true {
    let bytes: [UInt8]
    do {
      bytes = try await withTimeout(idleTimeout) {
        try await connection.read(until: endOfHead, max: maxHead)
      }
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
    try await connection.write(
      response("200 OK", body: hello, keepAlive: request.keepAlive, version: request.version, head: request.method == "HEAD"))
    if !request.keepAlive { return }
  }
}

func run(_ options: Options) throws {
  let loop = try EventLoop(backend: options.backend)
  let listener = try TCPListener(host: options.host, port: options.port, backlog: 4096, on: loop)
  printError("tinyasync-http-hello: on \(loop.backend), http://\(options.host):\(listener.port)/")
  print("READY")
  fflush(nil)  // READY must reach a pipe at once
  try loop.runUntilComplete {
    // Out of descriptors, the iteration pauses and retries by itself.
    for try await connection in listener {
      loop.spawn(name: "http connection") {
        defer { connection.close() }
        do {
          try await serve(connection)
        } catch {
          // A reset or vanished client ends its own connection only.
        }
      }
    }
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
