import Testing
import TinyAsync

/// Sixteen words of a fiber's own, kept on its stack across switches.
private struct Pattern: Equatable {
  var words: (Int, Int, Int, Int, Int, Int, Int, Int, Int, Int, Int, Int, Int, Int, Int, Int)

  init(_ seed: Int) {
    words = (seed, seed &* 3, seed &* 5, seed &* 7, seed &* 11, seed &* 13, seed &* 17, seed &* 19,
             seed &* 23, seed &* 29, seed &* 31, seed &* 37, seed &* 41, seed &* 43, seed &* 47, seed &* 53)
  }

  static func == (a: Pattern, b: Pattern) -> Bool {
    withUnsafeBytes(of: a.words) { x in withUnsafeBytes(of: b.words) { y in x.elementsEqual(y) } }
  }
}

/// Recurses `depth` frames, each with locals of its own, and sleeps at the
/// bottom: a deep stack to copy out and back. Returns the sum 0 + ... + depth,
/// or -1 if a frame's locals changed meanwhile.
@inline(never)
private func deepSleep(_ depth: Int, _ delay: Duration) throws -> Int {
  let mine = Pattern(depth)
  let below = depth == 0 ? 0 : try deepSleep(depth - 1, delay)
  if depth == 0 { try sleep(for: delay) }
  return below < 0 || mine != Pattern(depth) ? -1 : below + depth
}

/// A log the loop's fibers share (they all run on its one thread).
private final class Log<Entry> {
  var entries: [Entry] = []
  func append(_ entry: Entry) { entries.append(entry) }
}

/// The same fiber operations as `FiberTests`, `SyncTests` and
/// `TCPFiberTests`, in fibers spawned with `stack: .shared`: they run by
/// turns on the loop's one shared stack, each one's frames copied out while
/// it is parked, so nothing the loop or another fiber touches meanwhile may
/// be on it.
@Suite("Fibers on the shared stack")
struct SharedFiberTests {
  static let backends: [EventLoop.Backend] = [.epoll, .ioUring]
  struct Boom: Error, Equatable { let code: Int }

  /// Runs `body` in a shared-stack fiber from the loop's main fiber.
  private func onSharedStack<Value>(
    _ loop: EventLoop, _ body: @escaping () throws -> Value
  ) throws -> Value {
    try loop.runFiber { try loop.spawnFiber(name: "shared main", stack: .shared, body).get() }
  }

  // MARK: Stacks

  @Test(arguments: backends)
  func localsSurviveSwitchesBetweenSharedFibers(_ backend: EventLoop.Backend) throws {
    let loop = try makeLoop(backend)
    let sums = try loop.runFiber { () throws -> [Int] in
      // Shared and private fibers interleave; each checks its locals after
      // every switch while the others overwrite the shared stack.
      let fibers = (0..<60).map { i in
        loop.spawnFiber(stack: i % 3 == 2 ? .private : .shared) { () throws -> Int in
          var mine = Pattern(i)
          var total = 0
          for round in 0..<20 {
            try sleep(for: round % 4 == 0 ? .milliseconds(i % 3) : .zero)
            #expect(mine == Pattern(i + round))
            total += mine.words.0
            mine = Pattern(i + round + 1)
          }
          return total
        }
      }
      // Deep stacks, shared too.
      let deep = (0..<4).map { i in
        loop.spawnFiber(stack: .shared) { try deepSleep(40 + 20 * i, .milliseconds(1 + i)) }
      }
      return try fibers.map { try $0.get() } + deep.map { try $0.get() }
    }
    for i in 0..<60 { #expect(sums[i] == (0..<20).reduce(0) { $0 + i + $1 }) }
    for i in 0..<4 {
      let depth = 40 + 20 * i
      #expect(sums[60 + i] == depth * (depth + 1) / 2)
    }
  }

  @Test(arguments: backends)
  func sharedFibersSleepAndWakeInDeadlineOrder(_ backend: EventLoop.Backend) throws {
    let loop = try makeLoop(backend)
    let order = try onSharedStack(loop) { () throws -> [Int] in
      let log = Log<Int>()
      let sleepers = [30, 10, 20, 0].map { ms in
        loop.spawnFiber(stack: .shared) {
          try sleep(for: .milliseconds(ms))
          log.append(ms)
        }
      }
      let start = loop.now
      try sleep(for: .milliseconds(5))
      #expect(loop.now - start >= .milliseconds(5))
      for s in sleepers { try s.get() }
      return log.entries
    }
    #expect(order == [0, 10, 20, 30])
  }

  // MARK: Futures and gather

  @Test(arguments: backends)
  func futureGetInSharedFibers(_ backend: EventLoop.Backend) throws {
    let loop = try makeLoop(backend)
    let values = try onSharedStack(loop) { () throws -> [String] in
      // Completed by a timer's callback, by another shared fiber, and by an
      // async task, while several shared fibers wait on each.
      let byTimer = Future<String>()
      let byFiber = Future<String>()
      let byTask = Future<String>()
      loop.callLater(.milliseconds(2)) { byTimer.succeed("timer") }
      loop.spawnFiber(stack: .shared) {
        try sleep(for: .milliseconds(1))
        byFiber.succeed("fiber")
      }
      loop.spawn {
        try await sleep(for: .milliseconds(3))
        byTask.succeed("task")
      }
      let waiters = [byTimer, byFiber, byTask, byTimer, byFiber, byTask].map { future in
        loop.spawnFiber(stack: .shared) { try future.get() }
      }
      // A shared fiber's result, from another shared fiber.
      let worker = loop.spawnFiber(stack: .shared) { () throws -> String in
        try sleep(for: .milliseconds(1))
        return "worker"
      }
      let waiter = loop.spawnFiber(stack: .shared) { try worker.get() + "!" }
      return try waiters.map { try $0.get() } + [try waiter.get(), try byTask.get()]
    }
    #expect(values == ["timer", "fiber", "task", "timer", "fiber", "task", "worker!", "task"])
  }

  @Test(arguments: backends)
  func gatherInSharedFibers(_ backend: EventLoop.Backend) throws {
    let loop = try makeLoop(backend)
    try onSharedStack(loop) {
      let a = loop.spawnFiber(stack: .shared) { try sleep(for: .milliseconds(3)); return 1 }
      let b = loop.spawnFiber(stack: .shared) { try sleep(for: .milliseconds(1)); return "two" }
      let c = loop.spawnFiber { try sleep(for: .milliseconds(2)); return 3.0 }  // private
      let (x, y, z) = try gather(a, b, c)
      #expect(x == 1 && y == "two" && z == 3.0)

      // A failure cancels the rest, which unwind, then is thrown.
      var unwound = 0
      let slow = loop.spawnFiber(stack: .shared) { () throws -> Int in
        defer { unwound += 1 }
        try sleep(for: .seconds(10))
        return 0
      }
      let bad = loop.spawnFiber(stack: .shared) { () throws -> Int in
        try sleep(for: .milliseconds(1))
        throw Boom(code: 1)
      }
      #expect(throws: Boom(code: 1)) { try gather(slow, bad) }
      #expect(unwound == 1 && slow.isDone)

      // Interrupted by a timeout: all cancelled and finished.
      let d = loop.spawnFiber(stack: .shared) { defer { unwound += 1 }; try sleep(for: .seconds(10)) }
      let e = loop.spawnFiber(stack: .shared) { defer { unwound += 1 }; try sleep(for: .seconds(10)) }
      #expect(throws: TinyAsyncError.timedOut) {
        try withTimeout(.milliseconds(2)) { try gather(d, e) }
      }
      #expect(unwound == 3 && d.isDone && e.isDone)
    }
  }

  // MARK: Timeouts and cancellation

  @Test(arguments: backends)
  func timeoutsInSharedFibers(_ backend: EventLoop.Backend) throws {
    let loop = try makeLoop(backend)
    try onSharedStack(loop) {
      // Several shared fibers in scopes of their own at once.
      let scoped = (0..<8).map { i in
        loop.spawnFiber(stack: .shared) { () throws -> String in
          do {
            return try withTimeout(.milliseconds(2 + i)) { () throws -> String in
              try withTimeout(.seconds(10)) { try sleep(for: .seconds(10)) }
              return "slept"
            }
          } catch TinyAsyncError.timedOut {
            try sleep(for: .milliseconds(1))  // the scope is gone
            return "timed out \(i)"
          }
        }
      }
      for (i, f) in scoped.enumerated() { #expect(try f.get() == "timed out \(i)") }
      // The body returns first: its value.
      #expect(try withTimeout(.seconds(10)) { () throws -> Int in try sleep(for: .milliseconds(1)); return 1 } == 1)
      // Nested: the inner one fires, the outer one holds.
      let inner = try withTimeout(.seconds(10)) { () throws -> String in
        do {
          try withTimeout(.milliseconds(2)) { try sleep(for: .seconds(10)) }
          return "no"
        } catch TinyAsyncError.timedOut {
          try sleep(for: .milliseconds(1))
          return "inner expired"
        }
      }
      #expect(inner == "inner expired")
      // A future's and a fiber's get() time out; they keep running.
      let never = Future<Int>()
      #expect(throws: TinyAsyncError.timedOut) { try withTimeout(.milliseconds(2)) { try never.get() } }
      let slow = loop.spawnFiber(stack: .shared) { () throws -> Int in try sleep(for: .milliseconds(20)); return 3 }
      #expect(throws: TinyAsyncError.timedOut) { try withTimeout(.milliseconds(2)) { try slow.get() } }
      #expect(try slow.get() == 3)
    }
  }

  @Test(arguments: backends)
  func cancellingSharedFibers(_ backend: EventLoop.Backend) throws {
    let loop = try makeLoop(backend)
    try onSharedStack(loop) {
      var unwound: [String] = []
      let sleeper = loop.spawnFiber(name: "sleeper", stack: .shared) {
        defer { unwound.append("sleeper") }
        try sleep(for: .seconds(10))
      }
      let future = Future<Int>()
      let waiter = loop.spawnFiber(name: "waiter", stack: .shared) { () throws -> Int in
        defer { unwound.append("waiter") }
        return try future.get()
      }
      let catcher = loop.spawnFiber(stack: .shared) { () -> String in
        do {
          try sleep(for: .seconds(10))
          return "slept"
        } catch {
          return "caught \(error)"
        }
      }
      var ran = false
      let never = loop.spawnFiber(stack: .shared) { ran = true }
      never.cancel()  // before it started: its body never runs
      try sleep(for: .milliseconds(1))
      sleeper.cancel()
      waiter.cancel()
      catcher.cancel()
      #expect(throws: TinyAsyncError.cancelled) { try sleeper.get() }
      #expect(throws: TinyAsyncError.cancelled) { try waiter.get() }
      #expect(throws: TinyAsyncError.cancelled) { try never.get() }
      #expect(try catcher.get() == "caught \(TinyAsyncError.cancelled)")
      #expect(!ran)
      #expect(unwound.sorted() == ["sleeper", "waiter"])
      #expect(!future.isDone)  // cancelling its waiter left it alone
      // runFiber cancels and finishes the shared fibers still running.
      loop.spawnFiber(stack: .shared) { try sleep(for: .seconds(10)) }
    }
  }

  // MARK: Sync primitives

  @Test(arguments: backends)
  func lockAndQueueHandOffBetweenSharedFibers(_ backend: EventLoop.Backend) throws {
    let loop = try makeLoop(backend)
    let (log, received) = try onSharedStack(loop) { () throws -> ([String], [Int]) in
      let log = Log<String>()
      let event = Event()
      let lock = Lock()
      let semaphore = Semaphore(value: 2)
      let workers = (0..<4).map { i in
        loop.spawnFiber(stack: .shared) {
          try event.wait()
          try lock.withLock {
            log.append("in \(i)")
            try sleep(for: .milliseconds(1))  // the others queue behind
            log.append("out \(i)")
          }
          try semaphore.acquire()
          defer { semaphore.release() }
          try sleep(for: .zero)
        }
      }
      try sleep(for: .zero)
      #expect(log.entries.isEmpty)
      event.set()
      for w in workers { try w.get() }

      // A queue of capacity 1 between a shared producer and shared
      // consumers: every put and get parks and is handed over.
      let queue = Queue<Int>(capacity: 1)
      let producer = loop.spawnFiber(stack: .shared) {
        for i in 0..<300 { try queue.put(i) }
        for _ in 0..<3 { try queue.put(-1) }
      }
      let consumers = (0..<3).map { _ in
        loop.spawnFiber(stack: .shared) { () throws -> [Int] in
          var got: [Int] = []
          while true {
            let item = try queue.get()
            if item < 0 { return got }
            got.append(item)
            if item % 5 == 0 { try sleep(for: .zero) }
          }
        }
      }
      try producer.get()
      let received = try consumers.flatMap { try $0.get() }.sorted()
      return (log.entries, received)
    }
    #expect(log == (0..<4).flatMap { ["in \($0)", "out \($0)"] })
    #expect(received == Array(0..<300))
  }

  // MARK: TCP

  @Test(arguments: backends)
  func tcpEchoBetweenSharedFibers(_ backend: EventLoop.Backend) throws {
    let loop = try makeLoop(backend)
    try onSharedStack(loop) {
      let listener = try TCPListener(host: "127.0.0.1", port: 0)
      // The server: an accepting fiber and one echo fiber per connection,
      // all shared.
      loop.spawnFiber(name: "accept", stack: .shared) {
        while true {
          let connection: TCPConnection
          do {
            connection = try listener.accept()
          } catch TinyAsyncError.closed {
            return
          }
          loop.spawnFiber(name: "echo", stack: .shared) {
            defer { connection.close() }
            var buffer: [UInt8] = []
            while true {
              buffer.removeAll(keepingCapacity: true)
              if try connection.read(into: &buffer, max: 4096) == 0 { return }
              try connection.write(buffer)
            }
          }
        }
      }
      let big = [UInt8]((0..<300_000).map { UInt8(truncatingIfNeeded: $0 &* 7) })
      let clients = (0..<4).map { c in
        loop.spawnFiber(stack: .shared) { () throws -> Int in
          let connection = try TCPConnection.connect(host: "127.0.0.1", port: listener.port)
          defer { connection.close() }
          for i in 0..<50 {
            // Small strings: their bytes are on the shared stack while sent.
            let line = "c\(c) \(i)\n"
            try connection.write(line)
            #expect(try connection.read(until: UInt8(ascii: "\n")) == bytes(line))
          }
          try connection.write(big)
          var echoed: [UInt8] = []
          while echoed.count < big.count {
            #expect(try connection.read(into: &echoed, max: 10_000) > 0)
          }
          #expect(echoed == big)
          return c
        }
      }
      #expect(try clients.map { try $0.get() } == [0, 1, 2, 3])
      listener.close()
    }
  }

  // MARK: Exclusivity

  @Test(arguments: backends)
  func modifyAccessesHeldAcrossSwitchesInSharedFibers(_ backend: EventLoop.Backend) throws {
    let loop = try makeLoop(backend)
    let shared = FiberShared()
    try loop.runFiber {
      // As `fibersSuspendedInsideAccessesDoNotBreakEachOther`, on the shared
      // stack: each access record is on the stack that is copied out.
      let inouts = (0..<4).map { i in
        loop.spawnFiber(stack: .shared) { try bumpAfterSleep(&shared.counter, .milliseconds(1 + i)) }
      }
      let dicts = (0..<4).map { i in
        loop.spawnFiber(stack: .shared) {
          try bumpAfterSleep(&shared.dict[i % 2 == 0 ? "a" : "b", default: 0], .milliseconds(2 + i))
        }
      }
      let compound = (0..<4).map { i in
        loop.spawnFiber(stack: .shared) { shared.dict["a", default: 0] += try oneAfterSleep(.milliseconds(1 + i)) }
      }
      let mixed = (0..<2).map { i in  // a private one among them
        loop.spawnFiber(stack: i == 0 ? .private : .shared) {
          try bumpAfterSleep(&shared.dict["b", default: 0], .milliseconds(1 + i))
        }
      }
      for f in inouts + dicts + compound + mixed { try f.get() }
    }
    #expect(shared.counter == 4)
    #expect(shared.dict == ["a": 6, "b": 4])
  }

  // MARK: Many

  @Test(arguments: backends)
  func aHundredThousandSharedFibersSleepAtOnce(_ backend: EventLoop.Backend) throws {
    let loop = try makeLoop(backend)
    let count = 100_000
    let (woke, total) = try loop.runFiber { () throws -> (Int, Int) in
      var woke = 0
      let fibers = (0..<count).map { i in
        loop.spawnFiber(stack: .shared) { () throws -> Int in
          try sleep(for: .milliseconds(i % 50))
          woke += 1
          return i
        }
      }
      var total = 0
      for f in fibers { total += try f.get() }
      return (woke, total)
    }
    #expect(woke == count)
    #expect(total == count * (count - 1) / 2)
  }
}
