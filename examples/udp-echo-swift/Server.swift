import Glibc
import TinyAsync

/// The answer to a datagram over `max`: an error, never a cut echo.
let tooLong = Array("ERR too long\n".utf8)

/// What goes back for one datagram.
func reply(to datagram: Datagram) -> [UInt8] {
  datagram.truncated ? tooLong : datagram.bytes
}

/// Binds, prints READY and echoes until the socket closes, on the async
/// front or in a fiber. Here, not in main.swift: code there is main-actor
/// code, and an await in it would hop to the main thread, which is busy
/// running the loop. An error of one datagram (a refused peer) is logged
/// and the loop goes on.
func serve(host: String, port: Int, max: Int, fibers: Bool, backend: EventLoop.Backend) throws {
  let loop = try EventLoop(backend: backend)
  let socket = try UDPSocket(host: host, port: port, on: loop)
  printError("tinyasync-udp-echo: \(fibers ? "fibers" : "async") on \(loop.backend), \(try socket.localAddress)")
  print("READY \(try socket.port)")
  fflush(nil)  // READY must reach a pipe at once
  if fibers {
    try loop.runFiberUntilComplete {
      while true {
        do {
          let datagram = try socket.receive(max: max)
          try socket.send(reply(to: datagram), to: datagram.sender)
        } catch TinyAsyncError.closed {
          return
        } catch {
          printError("tinyasync-udp-echo: \(error)")
        }
      }
    }
  } else {
    try loop.runUntilComplete {
      while true {
        do {
          let datagram = try await socket.receive(max: max)
          try await socket.send(reply(to: datagram), to: datagram.sender)
        } catch TinyAsyncError.closed {
          return
        } catch {
          printError("tinyasync-udp-echo: \(error)")
        }
      }
    }
  }
}
