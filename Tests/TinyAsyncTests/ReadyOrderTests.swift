import Testing
@testable import TinyAsync

/// asyncio's ready-queue order across callbacks and task steps: each
/// expected log below is what CPython 3 prints for the same program
/// (call_soon, create_task, Future.set_result, sleep(0)).
@Suite("The ready queue: callbacks and task steps in asyncio's order")
struct ReadyOrderTests {
  static let backends: [EventLoop.Backend] = [.epoll, .ioUring]

  final class Log { var entries: [String] = [] }

  /// `call_soon(cb1); create_task(t1); call_soon(cb2); create_task(t2)`.
  @Test(arguments: backends)
  func callbacksAndNewTasksRunInTheOrderQueued(_ backend: EventLoop.Backend) throws {
    let loop = try makeLoop(backend, clock: .manual)
    let log = LoopThreadBox(Log())
    try loop.runUntilComplete {
      loop.callSoon { log.value.entries.append("cb1") }
      loop.spawn { log.value.entries.append("t1") }
      loop.callSoon { log.value.entries.append("cb2") }
      loop.spawn { log.value.entries.append("t2") }
      try await sleep(for: .zero)
      try await sleep(for: .zero)
    }
    #expect(log.value.entries == ["cb1", "t1", "cb2", "t2"])
  }

  /// Woken waiters are queued when their future completes:
  /// `fa.set_result(); call_soon(cb); fb.set_result()` runs A, cb, B.
  @Test(arguments: backends)
  func wokenWaitersKeepTheirPlaceAmongCallbacks(_ backend: EventLoop.Backend) throws {
    let loop = try makeLoop(backend, clock: .manual)
    let log = LoopThreadBox(Log())
    try loop.runUntilComplete {
      let fa = Future<Int>(), fb = Future<Int>()
      let a = loop.spawn { _ = try await fa.value; log.value.entries.append("A") }
      let b = loop.spawn { _ = try await fb.value; log.value.entries.append("B") }
      try await sleep(for: .zero)  // both wait now
      fa.succeed(1)
      loop.callSoon { log.value.entries.append("cb") }
      fb.succeed(1)
      _ = try await gather(a, b)
    }
    #expect(log.value.entries == ["A", "cb", "B"])
  }

  /// A task in `sleep(for: .zero)` resumes at its place in the queue: after
  /// U1 and before U2, which a callback queued after the yield.
  @Test(arguments: backends)
  func aYieldResumesAtItsPlace(_ backend: EventLoop.Backend) throws {
    let loop = try makeLoop(backend, clock: .manual)
    let log = LoopThreadBox(Log())
    try loop.runUntilComplete {
      loop.callSoon { log.value.entries.append("U1") }
      let t = loop.spawn {
        log.value.entries.append("T")
        try await sleep(for: .zero)
        log.value.entries.append("X")
      }
      loop.callSoon { loop.callSoon { log.value.entries.append("U2") } }
      try await t.value
      try await sleep(for: .zero)
      try await sleep(for: .zero)
    }
    #expect(log.value.entries == ["U1", "T", "X", "U2"])
  }

  /// Fibers are C tasks: their steps are C handles on the loop's ring,
  /// among the Swift queue's handle. A callback completes F's future (a
  /// fiber), Y's (a task), G's (a fiber): the next batch runs F, Y, G, and
  /// the task F spawns waits for the batch after, although the Swift
  /// queue's turn in F's batch (Y's) had not come yet when F spawned it
  /// (asyncio, all tasks: F Y G zF zG).
  @Test(arguments: backends)
  func entriesQueuedAfterTheirBatchBeganWaitForTheNext(_ backend: EventLoop.Backend) throws {
    let loop = try makeLoop(backend, clock: .manual)
    let log = LoopThreadBox(Log())
    try loop.runFiberUntilComplete {
      let fa = Future<Int>(), fy = Future<Int>(), fb = Future<Int>()
      let f = loop.spawnFiber {
        _ = try fa.get()
        log.value.entries.append("F")
        loop.spawn { log.value.entries.append("zF") }
      }
      let y = loop.spawn { _ = try await fy.value; log.value.entries.append("Y") }
      let g = loop.spawnFiber {
        _ = try fb.get()
        log.value.entries.append("G")
        loop.spawn { log.value.entries.append("zG") }
      }
      try sleep(for: .zero)  // all three wait now
      loop.callSoon {
        fa.succeed(1)
        fy.succeed(1)
        fb.succeed(1)
      }
      try f.get()
      try g.get()
      try sleep(for: .zero)
      try sleep(for: .zero)
    }
    #expect(log.value.entries == ["F", "Y", "G", "zF", "zG"])
  }

  /// Many entries, every other one cancelled, across the ring's growth: the
  /// rest run in order, the cancelled ones never, their closures released
  /// at the cancel.
  @Test(arguments: backends)
  func cancelledCallsAreSkippedAndReleased(_ backend: EventLoop.Backend) throws {
    let loop = try makeLoop(backend, clock: .manual)
    var ran: [Int] = []
    var handles: [CallbackHandle] = []
    weak var watched: Token?
    do {
      let token = Token()
      watched = token
      let h = loop.callSoon { _ = token; ran.append(-1) }
      #expect(h.isPending)
      #expect(h.cancel())
      #expect(!h.isPending)
      #expect(!h.cancel())  // once
    }
    #expect(watched == nil)  // released by the cancel, before any run
    for i in 0..<1000 {
      handles.append(loop.callSoon { ran.append(i) })
    }
    for i in stride(from: 1, to: 1000, by: 2) { #expect(handles[i].cancel()) }
    try loop.runUntilIdle()
    #expect(ran == Array(stride(from: 0, to: 1000, by: 2)))
    #expect(handles.allSatisfy { !$0.isPending && !$0.cancel() })
  }

  /// A handle kept after its loop is gone: cancel says false, and the
  /// closures the loop never ran were released with it.
  @Test func aHandleOutlivesItsLoop() throws {
    var loop: EventLoop? = try EventLoop()
    weak var watched: Token?
    let handle: CallbackHandle
    do {
      let token = Token()
      watched = token
      handle = loop!.callSoon { _ = token }
    }
    loop = nil
    #expect(watched == nil)
    #expect(!handle.cancel())
    #expect(!handle.isPending)
  }

  /// A callback that cancels the one queued right behind it in its batch.
  @Test(arguments: backends)
  func aCallbackCancelsTheNextInItsBatch(_ backend: EventLoop.Backend) throws {
    let loop = try makeLoop(backend, clock: .manual)
    var ran: [String] = []
    var second: CallbackHandle?
    loop.callSoon { ran.append("first"); #expect(second!.cancel()) }
    second = loop.callSoon { ran.append("second") }
    loop.callSoon { ran.append("third") }
    try loop.runUntilIdle()
    #expect(ran == ["first", "third"])
  }
}
