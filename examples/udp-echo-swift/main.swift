// tinyasync-udp-echo: a UDP echo server on TinyAsync, on the async front or
// on fibers; the tinyasync-async / tinyasync-fiber servers of the udp-echo
// benchmark (bench/WORKLOADS.md).
//
//   swift run -c release tinyasync-udp-echo [--port P] [--host H]
//       [--max N] [--mode async|fiber] [--backend auto|epoll|uring]
//
// Prints "READY <port>" once bound, then echoes each datagram to its
// sender until killed. Bad input ends nothing: a datagram over --max
// (default 2048) bytes comes back as "ERR too long", never cut short, and
// a sender gone before its answer (the next call's connectionRefused) is
// skipped.
import Glibc
import TinyAsync

func printError(_ line: String) {
  let text = line + "\n"
  _ = text.withCString { write(2, $0, strlen($0)) }
}

func usage(_ problem: String?) -> Never {
  if let problem { printError("tinyasync-udp-echo: \(problem)") }
  printError("usage: tinyasync-udp-echo [--port P] [--host H] [--max N] [--mode async|fiber] [--backend auto|epoll|uring]")
  exit(problem == nil ? 0 : 2)
}

var host = "127.0.0.1", port = 0, max = 2048, fibers = false
var backend = EventLoop.Backend.automatic
var arguments = CommandLine.arguments.dropFirst()
@MainActor func value(after flag: String) -> String {
  guard let value = arguments.popFirst() else { usage("\(flag) needs a value") }
  return value
}
while let argument = arguments.popFirst() {
  switch argument {
  case "--port":
    guard let n = Int(value(after: argument)), (0...65535).contains(n) else { usage("--port takes 0-65535") }
    port = n
  case "--host": host = value(after: argument)
  case "--max":
    guard let n = Int(value(after: argument)), (1...65536).contains(n) else { usage("--max takes 1-65536") }
    max = n
  case "--mode":
    switch value(after: argument) {
    case "async": fibers = false
    case "fiber": fibers = true
    default: usage("--mode is async or fiber")
    }
  case "--backend":
    switch value(after: argument) {
    case "auto": backend = .automatic
    case "epoll": backend = .epoll
    case "uring", "io_uring": backend = .ioUring
    default: usage("--backend is auto, epoll or uring")
    }
  case "-h", "--help": usage(nil)
  default: usage("unknown argument \(argument)")
  }
}

do {
  try serve(host: host, port: port, max: max, fibers: fibers, backend: backend)
} catch {
  printError("tinyasync-udp-echo: \(error)")
  exit(1)
}
