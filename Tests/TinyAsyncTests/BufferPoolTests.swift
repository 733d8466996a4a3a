import Testing
@testable import TinyAsync

/// The loop's buffer pool (issue 19): buffers come back for reuse up to
/// the limit, and what is over it goes back to the system.
@Suite("BufferPool")
struct BufferPoolTests {
  @Test func sizesComeInClasses() {
    #expect(BufferPool.capacity(for: 1) == 16 * 1024)
    #expect(BufferPool.capacity(for: 16 * 1024) == 16 * 1024)
    #expect(BufferPool.capacity(for: 16 * 1024 + 1) == 32 * 1024)
    #expect(BufferPool.capacity(for: 200 * 1024) == 256 * 1024)
    // Above the largest class: whole pages, never kept.
    #expect(BufferPool.capacity(for: 256 * 1024 + 1) == 256 * 1024 + 4096)
  }

  @Test func aBufferGivenBackIsTakenAgain() {
    let pool = BufferPool()
    let (first, capacity) = pool.take(atLeast: 100)
    first.storeBytes(of: 42, as: UInt8.self)
    pool.give(first, capacity: capacity)
    #expect(pool.keptBytes == capacity)
    let (again, _) = pool.take(atLeast: 5000)
    #expect(again == first)
    #expect(pool.mapped == 1)
    #expect(pool.keptBytes == 0)
    #expect(pool.outstanding == 1)
    pool.give(again, capacity: capacity)
    #expect(pool.outstanding == 0)
  }

  @Test func nothingIsKeptOverTheLimit() {
    let pool = BufferPool(limit: 32 * 1024)
    let buffers = (0..<4).map { _ in pool.take(atLeast: 16 * 1024) }
    for (base, capacity) in buffers { pool.give(base, capacity: capacity) }
    #expect(pool.keptBytes == 32 * 1024)  // two kept, two unmapped
    let large = pool.take(atLeast: 1 << 20)
    pool.give(large.base, capacity: large.capacity)
    #expect(pool.keptBytes == 32 * 1024)  // above the classes: never kept
    pool.limit = 16 * 1024
    #expect(pool.keptBytes == 16 * 1024)  // lowering it trims at once
    pool.limit = 0
    #expect(pool.keptBytes == 0)
  }

  @Test func aClosedPoolKeepsNothing() {
    let pool = BufferPool()
    let (base, capacity) = pool.take(atLeast: 1)
    pool.close()
    pool.give(base, capacity: capacity)
    #expect(pool.keptBytes == 0)
  }

  /// The knob on the loop, and a connection's buffers going back to its
  /// loop's pool when the connection goes.
  @Test(arguments: [EventLoop.Backend.epoll, .ioUring])
  func connectionsGiveTheirBuffersBack(_ backend: EventLoop.Backend) throws {
    let loop = try makeLoop(backend)
    #expect(loop.bufferPoolLimit == BufferPool.defaultLimit)
    try loop.runUntilComplete {
      let listener = try TCPListener(host: "127.0.0.1", port: 0)
      for round in 0..<3 {
        let client = try await TCPConnection.connect(host: "127.0.0.1", port: listener.port)
        let server = try await listener.accept()
        try await client.write([1, 2, 3])
        #expect(try await server.read(max: 1 << 20) == [1, 2, 3])
        #expect(loop.bufferPool.outstanding == 1)
        server.close()
        client.close()
        _ = consume server
        _ = consume client
        #expect(loop.bufferPool.outstanding == 0)
        // The first round mapped the buffer; the others reuse it.
        #expect(loop.bufferPool.mapped == 1, "round \(round)")
      }
      listener.close()
    }
  }
}
