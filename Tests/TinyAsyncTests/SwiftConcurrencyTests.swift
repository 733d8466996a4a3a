import Glibc
import Testing
@testable import TinyAsync

/// An actor without an executor of its own.
private actor DefaultActor {
  func onThreadOf(_ loop: EventLoop) -> Bool { loop.isOnLoopThread }
}

/// An actor whose executor is another loop (on another thread).
private actor ActorOnAnotherLoop {
  let executor: UnownedSerialExecutor
  init(executor: UnownedSerialExecutor) { self.executor = executor }
  nonisolated var unownedExecutor: UnownedSerialExecutor { executor }
  func onThread(_ thread: Int) -> Bool { currentThreadToken() == thread }
}

private func plainNonisolatedAsync(_ loop: EventLoop) async -> Bool {
  await Task.yield()
  return loop.isOnLoopThread
}

/// Runs `body` on a thread of its own and awaits it without blocking this
/// one: these tests need the global executor's threads (Task {},
/// Task.detached), which a loop blocking one of them (a sync test) would
/// starve on a small machine when tests run side by side.
private func onOwnThread<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
  try await withCheckedThrowingContinuation { continuation in
    let thread = startThread { continuation.resume(with: Result { try body() }) }
    pthread_detach(thread)
  }
}

/// What the README's "Swift Concurrency on the loop" says, checked: which
/// ways of running async code keep it on the loop's thread and which leave.
@Suite("Swift Concurrency on the loop: what stays, what leaves")
struct SwiftConcurrencyTests {
  @Test func structuredConcurrencyStaysOnTheLoop() async throws {
    let results = try await onOwnThread { let loop = try EventLoop(); return try loop.runUntilComplete {
      async let child = plainNonisolatedAsync(loop)
      let group = await withTaskGroup(of: Bool.self) { group in
        for _ in 0..<3 { group.addTask { await plainNonisolatedAsync(loop) } }
        return await group.reduce(true) { $0 && $1 }
      }
      let spawned = try await loop.spawn { await plainNonisolatedAsync(loop) }.value
      let preferred = await Task(executorPreference: loop) { await plainNonisolatedAsync(loop) }.value
      let actor = await DefaultActor().onThreadOf(loop)
      return [await plainNonisolatedAsync(loop), await child, group, spawned, preferred, actor]
    } }
    #expect(results == [true, true, true, true, true, true])
  }

  @Test func unstructuredTasksAndOtherExecutorsLeaveIt() async throws {
    let other = startOtherLoop()
    defer { other.stop() }
    let results = try await onOwnThread { let loop = try EventLoop(); return try loop.runUntilComplete {
      // The closures that leave the loop do not capture it: the last
      // reference to a loop must not go on another thread (its deinit
      // would run there).
      let loopThread = currentThreadToken()
      let plainTask = await Task { currentThreadToken() == loopThread }.value
      let detached = await Task.detached { currentThreadToken() == loopThread }.value
      let otherActor = await ActorOnAnotherLoop(executor: other.executor).onThread(loopThread)
      let mainActor = await MainActor.run { currentThreadToken() == loopThread }
      // Back from each: this task is still on the loop.
      return [plainTask, detached, otherActor, mainActor, loop.isOnLoopThread]
    } }
    #expect(results == [false, false, false, false, true])
  }

  @Test func aTaskWithTheLoopAsPreferenceStartedElsewhereRunsOnTheLoop() async throws {
    let onLoop = try await onOwnThread {
      var loop = try EventLoop()
      let onLoop = try loop.runUntilComplete { [loop] in
        let loopThread = currentThreadToken()
        return await Task.detached {
          await Task(executorPreference: loop) { currentThreadToken() == loopThread }.value
        }.value
      }
      // The detached task's closure holds the loop and may let it go on
      // its thread after `value` returned: wait for it, so the loop's
      // deinit runs here, on its own thread.
      while !isKnownUniquelyReferenced(&loop) { sched_yield() }
      return onLoop
    }
    #expect(onLoop)
  }

  /// `Task.sleep` without a clock waits on a Dispatch timer: the task comes
  /// back to the loop from another thread. With `clock: loop.clock` it does not.
  @Test func taskSleepWithoutTheLoopClockGoesThroughAnotherThread() async throws {
    let hops = try await onOwnThread { let loop = try EventLoop(); return try loop.runUntilComplete {
      let start = loop.jobsFromOtherThreads
      try await Task.sleep(for: .milliseconds(1), clock: loop.clock)
      let withLoopClock = loop.jobsFromOtherThreads - start
      try await Task.sleep(for: .milliseconds(1))
      return [withLoopClock, loop.jobsFromOtherThreads - start, loop.isOnLoopThread ? 1 : 0]
    } }
    #expect(hops[0] == 0)
    #expect(hops[1] >= 1)
    #expect(hops[2] == 1)  // and back on the loop
  }
}

/// A second loop running on a thread of its own until `stop()`. That
/// thread holds the one strong reference, so the loop goes away on its own
/// thread (a loop's deinit must run there); the test sees it unretained.
private struct OtherLoop: @unchecked Sendable {
  let loop: Unmanaged<EventLoop>
  let thread: pthread_t
  var executor: UnownedSerialExecutor { loop.takeUnretainedValue().asUnownedSerialExecutor() }
  func stop() {
    _ = loop.takeUnretainedValue().threadSafeHandle.call { (loop: EventLoop) in loop.unref() }
    joinThread(thread)
  }
}

private func startOtherLoop() -> OtherLoop {
  let made = SharedLog<OtherLoopRef>()
  let thread = startThread {
    let loop = try! EventLoop()
    loop.ref()
    made.append(OtherLoopRef(loop: Unmanaged.passUnretained(loop)))
    try! loop.runUntilIdle()
  }
  while made.all.isEmpty { sched_yield() }
  return OtherLoop(loop: made.all[0].loop, thread: thread)
}

private struct OtherLoopRef: @unchecked Sendable { let loop: Unmanaged<EventLoop> }
