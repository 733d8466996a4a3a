// tinyasync-fd-watcher: C code that owns its socket, driven from Swift.
//
// `line_client.c` is a small C client library in the style of libpq or
// libcurl's multi interface: it owns a non-blocking socket, speaks a line
// protocol, and never blocks — each `lc_step` does what I/O it can and
// says whether it waits to read or to write. A FileDescriptorWatcher on
// its socket turns that into awaits on the loop: no thread per client, no
// polling, and the C code needs no change. The server is TinyAsync's own
// (TCPListener), on the same loop. Three clients run as tasks and one in a
// fiber (the same watcher calls without `await`).
//
// `--backend epoll|uring` to choose the poller (default: auto).
import CLineClient
import Glibc
import TinyAsync

/// The protocol: "SUM 1 2 3" -> "6", "UPPER text" -> "TEXT".
func answer(_ line: String) -> String {
  let words = line.split(separator: " ")
  switch words.first {
  case "SUM": return String(words.dropFirst().compactMap { Int($0) }.reduce(0, +))
  case "UPPER": return line.dropFirst("UPPER ".count).uppercased()
  default: return "ERR unknown command"
  }
}

/// The server, in TinyAsync: a task per connection.
func serve(_ listener: TCPListener, on loop: EventLoop) {
  loop.spawn(name: "accept") {
    for try await connection in listener {
      loop.spawn {
        defer { connection.close() }
        while true {
          let line = try await connection.read(until: UInt8(ascii: "\n"), max: 1024)
          if line.isEmpty { return }
          try await connection.write(answer(String(decoding: line.dropLast(), as: UTF8.self)) + "\n")
        }
      }
    }
  }
}

struct ClientError: Error, CustomStringConvertible {
  let code: Int32
  var description: String { String(cString: strerror(-code)) }
}

/// One C client: the library, and a watcher on the socket it owns.
final class Client {
  let c: OpaquePointer
  let watcher: FileDescriptorWatcher

  init(port: Int) throws {
    var c: OpaquePointer?
    let rc = lc_connect(&c, "127.0.0.1", Int32(port))
    guard rc == 0, let c else { throw ClientError(code: rc) }
    self.c = c
    do {
      watcher = try FileDescriptorWatcher(fd: lc_fd(c))
    } catch {
      lc_close(c)
      throw error
    }
  }

  /// One request, from a task: step the library, and wait the way it says.
  func request(_ line: String) async throws -> String {
    let rc = lc_request(c, line)
    guard rc == 0 else { throw ClientError(code: rc) }
    while true {
      switch lc_step(c) {
      case Int32(LC_REPLY): return String(cString: lc_reply(c))
      case Int32(LC_WANT_READ): try await watcher.readable()
      case Int32(LC_WANT_WRITE): try await watcher.writable()
      case let error: throw ClientError(code: error)
      }
    }
  }

  /// The same from a fiber: the watcher's fiber forms, without await.
  func requestInFiber(_ line: String) throws -> String {
    let rc = lc_request(c, line)
    guard rc == 0 else { throw ClientError(code: rc) }
    while true {
      switch lc_step(c) {
      case Int32(LC_REPLY): return String(cString: lc_reply(c))
      case Int32(LC_WANT_READ): try watcher.readable()
      case Int32(LC_WANT_WRITE): try watcher.writable()
      case let error: throw ClientError(code: error)
      }
    }
  }

  /// The watcher first, then the library's own close of its socket.
  func close() {
    watcher.close()
    lc_close(c)
  }
}

func parseBackend() -> EventLoop.Backend {
  let args = CommandLine.arguments
  guard let i = args.firstIndex(of: "--backend"), i + 1 < args.count else { return .automatic }
  switch args[i + 1] {
  case "epoll": return .epoll
  case "uring", "io_uring": return .ioUring
  case "auto": return .automatic
  default:
    print("usage: tinyasync-fd-watcher [--backend auto|epoll|uring]")
    exit(2)
  }
}

func main() throws {
  let loop = try EventLoop(backend: parseBackend())
  print("C clients driven by FileDescriptorWatcher on the \(loop.backend) backend")
  try loop.runUntilComplete {
    let listener = try TCPListener(host: "127.0.0.1", port: 0)
    serve(listener, on: loop)
    let tasks = (1...3).map { n in
      loop.spawn(name: "client \(n)") { () async throws -> [String] in
        let client = try Client(port: listener.port)
        defer { client.close() }
        // A deadline over the whole conversation, as for any other wait.
        return try await withTimeout(.seconds(5)) {
          [
            try await client.request("SUM \(n) \(n * 10) \(n * 100)"),
            try await client.request("UPPER client \(n) says hello"),
          ]
        }
      }
    }
    let fiber = loop.spawnFiber(name: "fiber client") { () throws -> [String] in
      let client = try Client(port: listener.port)
      defer { client.close() }
      return try withTimeout(.seconds(5)) {
        [try client.requestInFiber("SUM 40 2"), try client.requestInFiber("HELLO")]
      }
    }
    for (n, task) in tasks.enumerated() {
      print("client \(n + 1) (task): \(try await task.value)")
    }
    print("client 4 (fiber): \(try await fiber.value)")
    listener.close()
  }
  print("done: four C clients, one loop thread, no blocking call")
}

do {
  try main()
} catch TinyAsyncError.backendUnavailable {
  print("fd-watcher: the backend asked for cannot be set up here")
  exit(77)  // a skip, for scripts/test.sh
} catch {
  print("fd-watcher failed: \(error)")
  exit(1)
}
