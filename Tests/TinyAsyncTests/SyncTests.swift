import Testing
import TinyAsync

/// Lets the tasks and fibers already started run up to their next wait.
private func settle() async throws {
  for _ in 0..<4 { try await sleep(for: .zero) }
}

/// The fiber form of `settle`.
private func settleFiber() throws {
  for _ in 0..<4 { try sleep(for: .zero) }
}

/// A log the loop's tasks share (they all run on its one thread).
private final class Log<Entry> {
  var entries: [Entry] = []
  func append(_ entry: Entry) { entries.append(entry) }
}

@Suite("Sync primitives: Event, Lock, Semaphore, Queue")
struct SyncTests {
  static let backends: [EventLoop.Backend] = [.epoll, .ioUring]

  // MARK: Event

  @Test(arguments: backends)
  func eventWakesEveryWaiterInOrder(_ backend: EventLoop.Backend) throws {
    let loop = try makeLoop(backend, clock: .manual)
    let order = try loop.runUntilComplete { () async throws -> [Int] in
      let event = Event()
      let log = Log<Int>()
      #expect(!event.isSet)
      let waiters = (0..<5).map { i in loop.spawn { try await event.wait(); log.append(i) } }
      try await settle()
      #expect(log.entries.isEmpty)
      event.set()
      #expect(event.isSet)
      for w in waiters { try await w.value }
      try await event.wait()  // set: at once
      event.set()  // again: nothing
      event.clear()
      #expect(!event.isSet)
      let late = loop.spawn { try await event.wait(); log.append(9) }
      try await settle()
      #expect(!late.isDone)
      loop.callSoon { event.set() }
      try await late.value
      return log.entries
    }
    #expect(order == [0, 1, 2, 3, 4, 9])
  }

  @Test(arguments: backends)
  func eventWaitCancelledAndTimedOut(_ backend: EventLoop.Backend) throws {
    let loop = try makeLoop(backend, clock: .manual)
    try loop.runUntilComplete {
      let event = Event()
      let cancelled = loop.spawn { try await event.wait() }
      let stays = loop.spawn { try await event.wait(); return "woken" }
      try await settle()
      cancelled.cancel()
      await #expect(throws: TinyAsyncError.cancelled) { try await cancelled.value }
      await #expect(throws: TinyAsyncError.timedOut) {
        try await withTimeout(.milliseconds(5)) { try await event.wait() }
      }
      #expect(!event.isSet)
      event.set()
      #expect(try await stays.value == "woken")
    }
  }

  // MARK: Lock

  @Test(arguments: backends)
  func lockIsFairAndExclusive(_ backend: EventLoop.Backend) throws {
    let loop = try makeLoop(backend, clock: .manual)
    let (order, maxInside) = try loop.runUntilComplete { () async throws -> ([Int], Int) in
      let lock = Lock()
      let log = Log<Int>()
      var inside = 0
      var maxInside = 0
      try await lock.acquire()
      #expect(lock.isLocked)
      #expect(!lock.tryAcquire())
      let tasks = (0..<5).map { i in
        loop.spawn {
          try await lock.withLock {
            inside += 1
            maxInside = max(maxInside, inside)
            log.append(i)
            try await sleep(for: .zero)
            inside -= 1
          }
        }
      }
      try await settle()
      lock.release()
      // Handed to task 0, which has not run: no barging.
      #expect(lock.isLocked)
      #expect(!lock.tryAcquire())
      for t in tasks { try await t.value }
      #expect(!lock.isLocked)
      #expect(lock.tryAcquire())
      lock.release()
      return (log.entries, maxInside)
    }
    #expect(order == [0, 1, 2, 3, 4])
    #expect(maxInside == 1)
  }

  @Test(arguments: backends)
  func lockWithLockReleasesOnThrow(_ backend: EventLoop.Backend) throws {
    struct Boom: Error {}
    let loop = try makeLoop(backend, clock: .manual)
    try loop.runUntilComplete {
      let lock = Lock()
      await #expect(throws: Boom.self) {
        try await lock.withLock { () async throws -> Int in throw Boom() }
      }
      #expect(!lock.isLocked)
      let v = try await lock.withLock { 7 }
      #expect(v == 7)
    }
  }

  @Test(arguments: backends)
  func cancelledLockWaiterDoesNotSwallowTheHandOff(_ backend: EventLoop.Backend) throws {
    let loop = try makeLoop(backend, clock: .manual)
    try loop.runUntilComplete {
      let lock = Lock()
      try await lock.acquire()
      let a = loop.spawn { try await lock.acquire(); lock.release(); return "a" }
      let b = loop.spawn { try await lock.acquire(); lock.release(); return "b" }
      try await settle()
      // a leaves the queue before the release: b gets the lock.
      a.cancel()
      await #expect(throws: TinyAsyncError.cancelled) { try await a.value }
      lock.release()
      #expect(try await b.value == "b")
      #expect(!lock.isLocked)

      // Cancelled in the same moment as the hand-off: c was handed the
      // lock first, so it holds it (its wait succeeded) and passes it on.
      try await lock.acquire()
      let c = loop.spawn { try await lock.acquire(); lock.release(); return "c" }
      let d = loop.spawn { try await lock.acquire(); lock.release(); return "d" }
      try await settle()
      lock.release()
      c.cancel()
      #expect(try await c.value == "c")
      #expect(try await d.value == "d")
      #expect(!lock.isLocked)
    }
  }

  @Test(arguments: backends)
  func lockAcquireTimesOut(_ backend: EventLoop.Backend) throws {
    let loop = try makeLoop(backend, clock: .manual)
    try loop.runUntilComplete {
      let lock = Lock()
      let holder = loop.spawn {
        try await lock.withLock { try await sleep(for: .milliseconds(30)) }
      }
      try await settle()
      let start = loop.now
      await #expect(throws: TinyAsyncError.timedOut) {
        try await withTimeout(.milliseconds(5)) { try await lock.acquire() }
      }
      #expect(loop.now - start == .milliseconds(5))  // not the holder's 30
      try await holder.value
      #expect(!lock.isLocked)  // the timed-out waiter took nothing
      try await lock.withLock {}
    }
  }

  // MARK: Semaphore

  @Test(arguments: backends)
  func semaphoreLimitsAndServesInOrder(_ backend: EventLoop.Backend) throws {
    let loop = try makeLoop(backend, clock: .manual)
    let (order, maxInside) = try loop.runUntilComplete { () async throws -> ([Int], Int) in
      let semaphore = Semaphore(value: 2)
      #expect(semaphore.value == 2)
      let log = Log<Int>()
      var inside = 0
      var maxInside = 0
      let tasks = (0..<6).map { i in
        loop.spawn {
          try await semaphore.acquire()
          defer { semaphore.release() }
          inside += 1
          maxInside = max(maxInside, inside)
          log.append(i)
          try await sleep(for: .milliseconds(1))
          inside -= 1
        }
      }
      try await settle()
      #expect(semaphore.value == 0)
      #expect(!semaphore.tryAcquire())
      for t in tasks { try await t.value }
      #expect(semaphore.value == 2)
      #expect(semaphore.tryAcquire())
      #expect(semaphore.value == 1)
      semaphore.release()
      semaphore.release()  // not bounded by the initial value
      #expect(semaphore.value == 3)
      return (log.entries, maxInside)
    }
    #expect(order == [0, 1, 2, 3, 4, 5])
    #expect(maxInside == 2)
  }

  @Test(arguments: backends)
  func cancelledOrTimedOutSemaphoreWaitersTakeNoPermit(_ backend: EventLoop.Backend) throws {
    let loop = try makeLoop(backend, clock: .manual)
    try loop.runUntilComplete {
      let semaphore = Semaphore(value: 0)
      let a = loop.spawn { try await semaphore.acquire(); return "a" }
      let b = loop.spawn { try await semaphore.acquire(); return "b" }
      try await settle()
      a.cancel()
      await #expect(throws: TinyAsyncError.cancelled) { try await a.value }
      await #expect(throws: TinyAsyncError.timedOut) {
        try await withTimeout(.milliseconds(2)) { try await semaphore.acquire() }
      }
      semaphore.release()
      #expect(try await b.value == "b")
      #expect(semaphore.value == 0)
      // Handed and cancelled in one moment: the waiter keeps the permit.
      let c = loop.spawn { try await semaphore.acquire(); return "c" }
      try await settle()
      semaphore.release()
      c.cancel()
      #expect(try await c.value == "c")
      #expect(semaphore.value == 0)
    }
  }

  // MARK: Queue

  @Test(arguments: backends)
  func queueTryOperationsAndCounts(_ backend: EventLoop.Backend) throws {
    let loop = try makeLoop(backend, clock: .manual)
    try loop.runUntilComplete {
      let queue = Queue<String>(capacity: 3)
      #expect(queue.capacity == 3)
      #expect(queue.isEmpty)
      #expect(queue.tryGet() == nil)
      for s in ["a", "b", "c"] { #expect(queue.tryPut(s)) }
      #expect(!queue.tryPut("d"))
      #expect(queue.count == 3)
      #expect(queue.tryGet() == "a")
      #expect(queue.tryPut("d"))  // wraps around
      var got: [String] = []
      while let s = queue.tryGet() { got.append(s) }
      #expect(got == ["b", "c", "d"])
      try await queue.put("e")
      #expect(try await queue.get() == "e")
    }
  }

  @Test(arguments: backends)
  func queueGettersAndPuttersWaitInOrder(_ backend: EventLoop.Backend) throws {
    let loop = try makeLoop(backend, clock: .manual)
    try loop.runUntilComplete {
      let queue = Queue<Int>(capacity: 2)
      // Getters wait while it is empty, served in order.
      let getters = (0..<3).map { _ in loop.spawn { try await queue.get() } }
      try await settle()
      for i in 10..<13 { try await queue.put(i) }  // each straight to a getter
      #expect(queue.isEmpty)
      #expect(try await getters[0].value == 10)
      #expect(try await getters[1].value == 11)
      #expect(try await getters[2].value == 12)

      // Putters wait while it is full, served in order.
      try await queue.put(0)
      try await queue.put(1)
      let putters = (2..<5).map { i in loop.spawn { try await queue.put(i) } }
      try await settle()
      #expect(!putters[0].isDone)
      var got: [Int] = []
      for _ in 0..<5 { got.append(try await queue.get()) }
      #expect(got == [0, 1, 2, 3, 4])
      for p in putters { try await p.value }
    }
  }

  @Test(arguments: backends)
  func cancelledQueueGetterLosesNoItem(_ backend: EventLoop.Backend) throws {
    let loop = try makeLoop(backend, clock: .manual)
    try loop.runUntilComplete {
      let queue = Queue<String>(capacity: 1)
      let a = loop.spawn { try await queue.get() }
      let b = loop.spawn { try await queue.get() }
      try await settle()
      a.cancel()
      await #expect(throws: TinyAsyncError.cancelled) { try await a.value }
      try await queue.put("x")
      #expect(try await b.value == "x")
      await #expect(throws: TinyAsyncError.timedOut) {
        _ = try await withTimeout(.milliseconds(2)) { try await queue.get() }
      }
      // Handed and cancelled in one moment: the getter got the item.
      let c = loop.spawn { try await queue.get() }
      try await settle()
      try await queue.put("y")
      c.cancel()
      #expect(try await c.value == "y")
      #expect(queue.isEmpty)
    }
  }

  @Test(arguments: backends)
  func cancelledOrTimedOutPutPutsNothing(_ backend: EventLoop.Backend) throws {
    let loop = try makeLoop(backend, clock: .manual)
    try loop.runUntilComplete {
      let queue = Queue<Int>(capacity: 1)
      try await queue.put(1)
      let a = loop.spawn { try await queue.put(2) }
      let b = loop.spawn { try await queue.put(3) }
      try await settle()
      a.cancel()
      await #expect(throws: TinyAsyncError.cancelled) { try await a.value }
      await #expect(throws: TinyAsyncError.timedOut) {
        try await withTimeout(.milliseconds(2)) { try await queue.put(4) }
      }
      #expect(try await queue.get() == 1)  // frees the slot for b
      try await b.value
      #expect(try await queue.get() == 3)
      #expect(queue.tryGet() == nil)
    }
  }

  @Test(arguments: backends)
  func producerAndConsumerWithBackpressure(_ backend: EventLoop.Backend) throws {
    let loop = try makeLoop(backend, clock: .manual)
    let (received, maxAhead) = try loop.runUntilComplete { () async throws -> ([Int], Int) in
      let queue = Queue<Int>(capacity: 4)
      var produced = 0
      var consumed = 0
      var maxAhead = 0
      let producer = loop.spawn {
        for i in 0..<1000 {
          try await queue.put(i)
          produced += 1
          maxAhead = max(maxAhead, produced - consumed)
        }
        try await queue.put(-1)
      }
      var received: [Int] = []
      while true {
        let item = try await queue.get()
        if item < 0 { break }
        received.append(item)
        consumed += 1
        if item % 7 == 0 { try await sleep(for: .zero) }  // a slower consumer
      }
      try await producer.value
      return (received, maxAhead)
    }
    #expect(received == Array(0..<1000))
    // Never more than the capacity ahead, plus one handed to the consumer
    // that has not run yet.
    #expect(maxAhead <= 5)
    #expect(maxAhead >= 4)
  }

  // MARK: Fibers

  @Test(arguments: backends, FiberTests.stacks)
  func fiberForms(_ backend: EventLoop.Backend, _ stack: FiberStack) throws {
    let loop = try makeLoop(backend, clock: .manual)
    let log = try loop.runFiberUntilComplete(on: stack) { () throws -> [String] in
      let log = Log<String>()
      let event = Event()
      let lock = Lock()
      let semaphore = Semaphore(value: 1)
      let queue = Queue<Int>(capacity: 2)
      let fibers = (0..<3).map { i in
        loop.spawnFiber(stack: stack) {
          try event.wait()
          try lock.withLock {
            log.append("lock \(i)")
            try sleep(for: .zero)
          }
          try semaphore.acquire()
          log.append("permit \(i)")
          semaphore.release()
          try queue.put(i)
        }
      }
      try settleFiber()
      #expect(log.entries.isEmpty)
      event.set()
      var got: [Int] = []
      for _ in 0..<3 { got.append(try queue.get()) }
      _ = try gather(fibers[0], fibers[1], fibers[2])
      log.append("got \(got)")
      #expect(lock.tryAcquire())
      lock.release()
      #expect(semaphore.tryAcquire())
      semaphore.release()
      return log.entries
    }
    #expect(log == ["lock 0", "permit 0", "lock 1", "permit 1", "lock 2", "permit 2", "got [0, 1, 2]"])
  }

  @Test(arguments: backends, FiberTests.stacks)
  func fiberWaitsAreCancelledAndTimedOut(_ backend: EventLoop.Backend, _ stack: FiberStack) throws {
    let loop = try makeLoop(backend, clock: .manual)
    try loop.runFiberUntilComplete(on: stack) {
      let lock = Lock()
      let queue = Queue<Int>(capacity: 1)
      try lock.acquire()
      let waiter = loop.spawnFiber(stack: stack) { try lock.acquire() }
      let getter = loop.spawnFiber(stack: stack) { try queue.get() }
      let next = loop.spawnFiber(stack: stack) { try queue.get() }
      try settleFiber()
      waiter.cancel()
      getter.cancel()
      #expect(throws: TinyAsyncError.cancelled) { try waiter.get() }
      #expect(throws: TinyAsyncError.cancelled) { try getter.get() }
      let start = loop.now
      let timed = loop.spawnFiber(stack: stack) { try withTimeout(.milliseconds(2)) { try lock.acquire() } }
      #expect(throws: TinyAsyncError.timedOut) { try timed.get() }
      #expect(loop.now - start == .milliseconds(2))
      lock.release()
      #expect(!lock.isLocked)  // nobody left waiting
      #expect(queue.tryPut(5))  // to `next`, not the cancelled getter
      #expect(try next.get() == 5)
      try queue.put(6)
      #expect(throws: TinyAsyncError.timedOut) {
        try withTimeout(.milliseconds(2)) { try queue.put(7) }
      }
      #expect(queue.tryGet() == 6)
      #expect(queue.tryGet() == nil)
    }
  }

  @Test(arguments: backends, FiberTests.stacks)
  func fiberProducerAndConsumer(_ backend: EventLoop.Backend, _ stack: FiberStack) throws {
    let loop = try makeLoop(backend, clock: .manual)
    let received = try loop.runFiberUntilComplete(on: stack) { () throws -> [Int] in
      let queue = Queue<Int>(capacity: 3)
      let producer = loop.spawnFiber(stack: stack) {
        for i in 0..<500 { try queue.put(i) }
      }
      var received: [Int] = []
      for _ in 0..<500 { received.append(try queue.get()) }
      try producer.get()
      return received
    }
    #expect(received == Array(0..<500))
  }

  @Test(arguments: backends, FiberTests.stacks)
  func locksAndQueuesHandOffBetweenFibers(_ backend: EventLoop.Backend, _ stack: FiberStack) throws {
    let loop = try makeLoop(backend, clock: .manual)
    let (log, received) = try loop.runFiberUntilComplete(on: stack) { () throws -> ([String], [Int]) in
      let log = Log<String>()
      let event = Event()
      let lock = Lock()
      let semaphore = Semaphore(value: 2)
      let workers = (0..<4).map { i in
        loop.spawnFiber(stack: stack) {
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

      // A queue of capacity 1 between a producer and consumers: every put
      // and get parks and is handed over.
      let queue = Queue<Int>(capacity: 1)
      let producer = loop.spawnFiber(stack: stack) {
        for i in 0..<300 { try queue.put(i) }
        for _ in 0..<3 { try queue.put(-1) }
      }
      let consumers = (0..<3).map { _ in
        loop.spawnFiber(stack: stack) { () throws -> [Int] in
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

  // MARK: Fibers and async tasks on one primitive

  @Test(arguments: backends)
  func fibersAndTasksShareOneFIFO(_ backend: EventLoop.Backend) throws {
    let loop = try makeLoop(backend, clock: .manual)
    let order = try loop.runUntilComplete { () async throws -> [String] in
      let lock = Lock()
      let log = Log<String>()
      let holder = Semaphore(value: 0)
      // A fiber holds the lock until told; then waiters arrive in turn,
      // fiber, task, fiber, task.
      let first = loop.spawnFiber {
        try lock.acquire()
        try holder.acquire()
        log.append("fiber 0")
        lock.release()
      }
      try await settle()
      var fibers = [first]
      var tasks: [TaskHandle<Void>] = []
      for i in 1...4 {
        if i % 2 == 1 {
          fibers.append(loop.spawnFiber {
            try lock.withLock {
              log.append("fiber \(i)")
              try sleep(for: .zero)
            }
          })
        } else {
          tasks.append(loop.spawn {
            try await lock.withLock {
              log.append("task \(i)")
              try await sleep(for: .zero)
            }
          })
        }
        try await settle()
      }
      holder.release()
      for f in fibers { try await f.value }
      for t in tasks { try await t.value }
      #expect(!lock.isLocked)
      return log.entries
    }
    #expect(order == ["fiber 0", "fiber 1", "task 2", "fiber 3", "task 4"])
  }

  @Test(arguments: backends)
  func queueBetweenFibersAndTasks(_ backend: EventLoop.Backend) throws {
    let loop = try makeLoop(backend, clock: .manual)
    try loop.runUntilComplete {
      let toTasks = Queue<Int>(capacity: 2)
      let toFibers = Queue<Int>(capacity: 2)
      // A fiber produces for a task; a task produces for a fiber; getters
      // of both kinds wait on one queue and alternate.
      let fiberProducer = loop.spawnFiber { for i in 0..<200 { try toTasks.put(i) } }
      let taskProducer = loop.spawn { for i in 0..<200 { try await toFibers.put(i) } }
      let fiberConsumer = loop.spawnFiber { () throws -> [Int] in
        var got: [Int] = []
        for _ in 0..<200 { got.append(try toFibers.get()) }
        return got
      }
      var got: [Int] = []
      for _ in 0..<200 { got.append(try await toTasks.get()) }
      #expect(got == Array(0..<200))
      #expect(try await fiberConsumer.value == Array(0..<200))
      try await fiberProducer.value
      try await taskProducer.value

      let shared = Queue<String>(capacity: 1)
      let fiberGetter = loop.spawnFiber { try shared.get() }
      try await settle()
      let taskGetter = loop.spawn { try await shared.get() }
      try await settle()
      try await shared.put("first")
      try await shared.put("second")
      #expect(try await fiberGetter.value == "first")
      #expect(try await taskGetter.value == "second")
    }
  }
}

/// Misuse of the primitives stops the program with a message (exit tests).
@Suite("Sync primitives: misuse stops with a message")
struct SyncMisuseTests {
  static func releaseFreeLock() throws {
    try EventLoop.run { Lock().release() }
  }

  static func releaseAFibersLockInAsyncCode() throws {
    let loop = try EventLoop()
    try loop.runUntilComplete {
      let lock = Lock()
      let fiber = loop.spawnFiber { try lock.acquire() }
      try await fiber.value
      lock.release()
    }
  }

  static func fiberGetOutsideAFiber() throws {
    let loop = try EventLoop()
    let queue = Queue<Int>(capacity: 1, on: loop)
    _ = try queue.get()
  }

  private static func stderr(_ result: ExitTest.Result?) -> String {
    String(decoding: result?.standardErrorContent ?? [], as: UTF8.self)
  }

  @Test func releasingAFreeLockStops() async {
    let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
      try SyncMisuseTests.releaseFreeLock()
    }
    #expect(Self.stderr(result).contains("Lock.release(): the lock is not held"))
  }

  @Test func releasingAFibersLockInAsyncCodeStops() async {
    let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
      try SyncMisuseTests.releaseAFibersLockInAsyncCode()
    }
    #expect(Self.stderr(result).contains("Lock.release() in async code, but a fiber holds the lock"))
  }

  @Test func fiberFormOutsideAFiberStops() async {
    let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
      try SyncMisuseTests.fiberGetOutsideAFiber()
    }
    #expect(Self.stderr(result).contains("Queue.get() was called outside a fiber"))
  }
}
