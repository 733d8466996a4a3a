import Glibc
import Testing
import TinyAsync

/// A listener out of file descriptors logs the episode twice -- when it
/// starts and, with a count, when it is over -- not once per 10 ms retry.
/// In a child process, whose descriptor limit the test lowers.
@Suite("TCPListener: a shortage of descriptors is logged once")
struct ListenerShortageTests {
  @Test func emfileForASecondLogsTwoLines() async {
    let result = await #expect(
      processExitsWith: .success, observing: [\.standardOutputContent, \.standardErrorContent]
    ) {
      try EventLoop.run {
        let loop = EventLoop.current!
        let listener = try TCPListener(host: "127.0.0.1", port: 0)
        // The client's socket first, then every descriptor left taken.
        let client = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var limit = rlimit()
        getrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit)
        limit.rlim_cur = 256
        setrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit)
        var spare: [Int32] = []
        while true {
          let fd = dup(0)
          if fd < 0 { break }
          spare.append(fd)
        }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(listener.port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let rc = withUnsafePointer(to: &address) {
          $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            connect(client, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
          }
        }
        precondition(rc == 0, "connect: \(errno)")  // the backlog takes it at once
        let accepting = loop.spawn { () async throws -> Bool in
          var connections = listener.makeAsyncIterator()
          let connection = try await connections.next()
          connection?.close()
          return connection != nil
        }
        try await sleep(for: .seconds(1))  // about 100 failed retries
        for fd in spare.suffix(8) { close(fd) }
        let accepted = try await accepting.value
        precondition(accepted, "no connection after the shortage")
        close(client)
        listener.close()
      }
    }
    let output = String(decoding: (result?.standardOutputContent ?? []) + (result?.standardErrorContent ?? []), as: UTF8.self)
    let lines = output.split(separator: "\n").filter { $0.contains("TCPListener on port") }
    #expect(lines.count == 2, "\(output)")
    #expect(lines.first?.contains("accept failed") == true, "\(output)")
    #expect(lines.last?.contains("recovered after") == true, "\(output)")
  }
}
