import Testing
import TinyAsync

/// Misuse stops the program with a message that names it. Each case runs
/// in a child process (swift-testing exit tests).
@Suite("Misuse stops with a message")
struct MisuseTests {
  @MainActor static func spawnFromTheMainActor() throws {
    let loop = try EventLoop()
    loop.spawn { 1 }  // isolated to the main actor, not to the loop
  }

  @Test func spawningAMainActorClosureStops() async {
    let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
      try await MisuseTests.spawnFromTheMainActor()
    }
    let text = String(decoding: result?.standardErrorContent ?? [], as: UTF8.self)
    #expect(text.contains("EventLoop.spawn was called from code isolated to MainActor"))
    #expect(text.contains("inside EventLoop.run { ... }"))
  }

  /// Top-level code is the main actor's, and so is a fiber's closure
  /// written there.
  @MainActor static func spawnInsideAMainActorFiber() throws {
    try EventLoop.runFiber { EventLoop.current!.spawn { 1 } }
  }

  @Test func spawningInAMainActorFiberStopsWithTheFibersFix() async {
    let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
      try await MisuseTests.spawnInsideAMainActorFiber()
    }
    let text = String(decoding: result?.standardErrorContent ?? [], as: UTF8.self)
    #expect(text.contains("EventLoop.spawn was called from code isolated to MainActor"))
    #expect(text.contains("in a fiber, move its code into a function"))
    #expect(!text.contains("EventLoop.run {"))
  }

  @Test func sleepOutsideALoopStops() async {
    let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
      try await sleep(for: .milliseconds(1))
    }
    let text = String(decoding: result?.standardErrorContent ?? [], as: UTF8.self)
    #expect(text.contains("sleep(for:) needs a running EventLoop"))
  }

  @Test func usingALoopFromAnotherThreadStops() async {
    let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
      let loop = try EventLoop()
      let t = startThread { loop.callSoon {} }
      joinThread(t)
    }
    let text = String(decoding: result?.standardErrorContent ?? [], as: UTF8.self)
    #expect(text.contains("EventLoop.callSoon was called on a thread that is not its loop's"))
  }

  @Test func writingToAConnectionFromADetachedTaskStops() async {
    let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
      try EventLoop.run {
        let listener = try TCPListener(host: "127.0.0.1", port: 0)
        let connection = try await TCPConnection.connect(host: "127.0.0.1", port: listener.port)
        let box = LoopThreadBox(connection)  // what Swift 6 lets through unchecked
        await Task.detached { try? await box.value.write("hello") }.value
      }
    }
    let text = String(decoding: result?.standardErrorContent ?? [], as: UTF8.self)
    #expect(text.contains("TCPConnection.write was called on a thread that is not its loop's"))
    #expect(text.contains("use them from tasks on that loop (loop.spawn"))
    #expect(text.contains("loop.threadSafeHandle"))
  }

  @Test func readingAFutureFromAnotherThreadStops() async {
    let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
      try EventLoop.run {
        let future = LoopThreadBox(Future<Int>())
        joinThread(startThread { _ = future.value.isDone })
      }
    }
    let text = String(decoding: result?.standardErrorContent ?? [], as: UTF8.self)
    #expect(text.contains("Future.isDone was called on a thread that is not its loop's"))
  }

  @Test func awaitingATaskHandleFromAPlainTaskNamesTaskHandleValue() async {
    let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
      try EventLoop.run {
        let handle = LoopThreadBox(EventLoop.current!.spawn { 1 })
        await Task { _ = try? await handle.value.value }.value  // Task {} leaves the loop
      }
    }
    let text = String(decoding: result?.standardErrorContent ?? [], as: UTF8.self)
    #expect(text.contains("TaskHandle.value was called on a thread that is not its loop's"))
  }

  /// Deep enough to run through any fiber stack; each frame keeps 512
  /// bytes of its own, which the optimizer cannot drop.
  @inline(never) static func recurse(_ depth: Int) -> Int {
    var frame = (Int64(depth), Int64(0), Int64(0), Int64(0), Int64(0), Int64(0), Int64(0), Int64(0))
    var frames = (frame, frame, frame, frame, frame, frame, frame, frame)
    // Its address escapes into a function the optimizer may not look into,
    // so a release build keeps all 512 bytes in this frame too.
    withUnsafeMutableBytes(of: &frames) { keep($0.baseAddress!, depth) }
    frame.1 = Int64(depth == 0 ? 0 : recurse(depth - 1))
    return Int(frame.1) + withUnsafeBytes(of: &frames) { Int($0[1]) }
  }

  @_optimize(none) @inline(never) static func keep(_ bytes: UnsafeMutableRawPointer, _ depth: Int) {
    bytes.storeBytes(of: UInt8(truncatingIfNeeded: depth), as: UInt8.self)
  }

  /// The last reference to a loop dropped on another thread: the message
  /// names the Swift mistake, not the C call that refuses it.
  @Test func aLoopReleasedOnAnotherThreadNamesTheMistake() async {
    let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
      final class Holder: @unchecked Sendable { var loop: EventLoop? }
      let holder = Holder()
      holder.loop = try EventLoop()
      holder.loop!.callSoon {}  // something for the teardown to drop
      joinThread(startThread { holder.loop = nil })
    }
    let text = String(decoding: result?.standardErrorContent ?? [], as: UTF8.self)
    #expect(text.contains("EventLoop was released on a thread that is not its own"), "\(text)")
  }

  @Test func aFiberStackOverflowGivesSwiftAdvice() async {
    let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
      let loop = try EventLoop()
      _ = try loop.runFiberUntilComplete { MisuseTests.recurse(1_000_000) }
    }
    let text = String(decoding: result?.standardErrorContent ?? [], as: UTF8.self)
    #expect(text.contains("stack overflow in task 'main'"))
    #expect(text.contains("keep large values and deep recursion out of fibers"))
    #expect(!text.contains("cloop_options"))
  }
}
