// Part 5 of the demo: an echo server and its clients over loopback, first on
// the async front, then on fibers. The seeds' sock_recv/sock_sendall: each
// read or write parks only the task (or fiber) that calls it, and the loop
// goes on with every other connection meanwhile.
import TinyAsync

/// How many clients talk to each server at once, and lines each sends.
let echoClients = 3
let echoLines = 4

func echoDemos(_ loop: EventLoop) async throws {
  try await asyncEcho(loop)
  try await fiberEcho(loop)
}

// MARK: On the async front

/// One server task accepting, a task per connection echoing lines, and
/// three client tasks, all interleaved on the loop's one thread.
func asyncEcho(_ loop: EventLoop) async throws {
  let listener = try TCPListener(host: "127.0.0.1", port: 0, on: loop)  // port 0: any free port
  let server = loop.spawn(name: "echo server") {
    var served = 0
    // Ends when the listener is closed (the iteration then finishes).
    for try await connection in listener {
      served += 1
      loop.spawn(name: "echo connection") {
        defer { connection.close() }
        while true {
          let line = try await connection.read(until: UInt8(ascii: "\n"), max: 1024)
          if line.isEmpty { return }  // the client closed its side
          try await connection.write(line)
        }
      }
    }
    return served
  }
  let clients = (0..<echoClients).map { client in
    loop.spawn(name: "client \(client)") { () async throws -> Int in
      let connection = try await TCPConnection.connect(host: "127.0.0.1", port: listener.port)
      defer { connection.close() }
      var echoed = 0
      for n in 0..<echoLines {
        let line = "client \(client) line \(n)\n"
        try await connection.write(line)
        let answer = try await connection.read(until: UInt8(ascii: "\n"), max: 1024)
        guard answer == Array(line.utf8) else { fatalError("the echo changed a line: \(answer)") }
        echoed += 1
      }
      return echoed
    }
  }
  let echoed = try await gather(clients).reduce(0, +)
  listener.close()
  let served = try await server.value
  print("5. async echo on port \(listener.port): \(served) connections, \(echoed) lines sent and echoed back intact")
}

// MARK: On fibers

/// The same story on fibers: the code reads as blocking calls (no await),
/// and each call parks only its fiber. The async code above waits for the
/// fibers through their handles.
func fiberEcho(_ loop: EventLoop) async throws {
  let listener = try TCPListener(host: "127.0.0.1", port: 0, on: loop)
  let server = loop.spawnFiber(name: "echo server") { () throws -> Int in
    var served = 0
    while true {
      let connection: TCPConnection
      do {
        connection = try listener.accept()  // the fiber form: no await
      } catch TinyAsyncError.closed {
        return served
      }
      served += 1
      loop.spawnFiber(name: "echo connection") {
        defer { connection.close() }
        while true {
          let line = try connection.read(until: UInt8(ascii: "\n"), max: 1024)
          if line.isEmpty { return }
          try connection.write(line)
        }
      }
    }
  }
  let clients = (0..<echoClients).map { client in
    loop.spawnFiber(name: "client \(client)") { () throws -> Int in
      let connection = try TCPConnection.connect(host: "127.0.0.1", port: listener.port)
      defer { connection.close() }
      var echoed = 0
      for n in 0..<echoLines {
        let line = "fiber \(client) line \(n)\n"
        try connection.write(line)
        let answer = try connection.read(until: UInt8(ascii: "\n"), max: 1024)
        guard answer == Array(line.utf8) else { fatalError("the echo changed a line: \(answer)") }
        echoed += 1
      }
      return echoed
    }
  }
  var echoed = 0
  for client in clients { echoed += try await client.value }
  listener.close()  // wakes the accepting fiber with .closed
  let served = try await server.value
  print("6. fiber echo on port \(listener.port): \(served) connections, \(echoed) lines sent and echoed back intact")
}
