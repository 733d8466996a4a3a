// tinyasync-echo: a TCP echo server on TinyAsync, on the async front or on
// fibers, for trying by hand and for the echo benchmarks
// (../../../shared/peers/WORKLOADS.md: `--port P`, READY once listening).
//
//   swift run -c release tinyasync-echo [--port P] [--host H]
//       [--mode async|fiber] [--backend auto|epoll|uring]
//       [--lines [--max-line N]] [--drain-seconds S] [--loops N [--acceptor]]
//
// It echoes bytes as they come; with --lines it echoes line by line
// (read(until:max:)) and answers a line longer than N bytes (default 8192)
// with an error before closing that connection. A peer that resets or
// vanishes ends its own connection only. On SIGTERM or SIGINT it stops
// accepting, gives the connections in flight --drain-seconds (default 5)
// to finish, closes the rest and exits 0. --loops N (default: one per CPU) serves on
// N loops, one per thread, each listening on the port (SO_REUSEPORT), or
// with --acceptor one listener on loop 0 handing connections round-robin.
import Glibc
import TinyAsync

var options = EchoOptions()
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
  case "--mode":
    switch value(after: argument) {
    case "async": options.fibers = false
    case "fiber": options.fibers = true
    default: usage("--mode is async or fiber")
    }
  case "--backend":
    switch value(after: argument) {
    case "auto": options.backend = .automatic
    case "epoll": options.backend = .epoll
    case "uring", "io_uring": options.backend = .ioUring
    default: usage("--backend is auto, epoll or uring")
    }
  case "--lines": options.lines = true
  case "--drain-seconds":
    guard let seconds = Double(value(after: argument)), seconds >= 0 else { usage("--drain-seconds takes a number") }
    options.drain = .milliseconds(Int64(seconds * 1000))
  case "--max-line":
    guard let n = Int(value(after: argument)), n > 0 else { usage("--max-line takes a positive number") }
    options.maxLine = n
  case "--loops":
    guard let n = Int(value(after: argument)), n > 0 else { usage("--loops takes a positive number") }
    options.loops = n
  case "--acceptor": options.acceptor = true
  case "-h", "--help": usage(nil)
  default: usage("unknown argument \(argument)")
  }
}

do {
  try serve(options)
} catch {
  printError("tinyasync-echo: \(error)")
  exit(1)
}
