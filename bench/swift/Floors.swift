import CLoop
import Glibc
import TinyAsync

// The floors of the Swift workloads: what the same work costs with nothing
// of TinyAsync's own on the path, measured in the same run so that every
// goal can be set against both the peers and what Swift itself allows.
//
// - tinyasync-floor-continuation (future): one task on the loop (as the
//   executor), N rounds of a bare `withUnsafeContinuation` resumed from a
//   C handle queued with `cloop_call_soon`. Left out: the Future object,
//   its outcome and waiters, the cancellation handler and timeout scope
//   every TinyAsync wait installs, the misuse checks.
// - tinyasync-floor-task (spawn): N bare `Task(executorPreference: loop)`
//   that each yield once through that continuation round and return i,
//   awaited with `.value`. Left out: TaskHandle, the loop's list of live
//   tasks (asyncio.run's clean-up), names, gather.
// - tinyasync-floor-fiber-switch (switch): two C tasks handing over through
//   the loop with `cloop_sleep(0)`, each switch wrapped in the exclusivity
//   swap a fiber needs (swift_task_exit/enterThreadLocalContext). Left out:
//   the fiber's frame lookup, misuse checks, the Swift closure and its
//   result, cancellation mapping to errors.

// MARK: one continuation round through a C handle

/// A waiting task's continuation and the handle that resumes it; on the
/// heap, as the task is parked.
struct FloorWaiter {
  var handle = cloop_handle()
  var continuation: UnsafeContinuation<Void, Never>?
}

private let resumeWaiter: cloop_fn = { arg in
  let waiter = arg!.assumingMemoryBound(to: FloorWaiter.self)
  let continuation = waiter.pointee.continuation!
  waiter.pointee.continuation = nil
  continuation.resume()
}

/// Parks the calling task until the loop's next batch runs `waiter`'s handle.
@inline(__always)
func floorRound(_ loop: OpaquePointer, _ waiter: UnsafeMutablePointer<FloorWaiter>) async {
  await withUnsafeContinuation { (continuation: UnsafeContinuation<Void, Never>) in
    waiter.pointee.continuation = continuation
    cloop_call_soon(loop, &waiter.pointee.handle)
  }
}

func makeWaiter() -> UnsafeMutablePointer<FloorWaiter> {
  let waiter = UnsafeMutablePointer<FloorWaiter>.allocate(capacity: 1)
  waiter.initialize(to: FloorWaiter())
  cloop_handle_init(&waiter.pointee.handle, resumeWaiter, waiter)
  return waiter
}

// MARK: future

func floorContinuation(n: Int) throws {
  let loop = try EventLoop()
  let wall = try loop.runUntilComplete {
    let cLoop = cloop_running_loop()!
    let waiter = makeWaiter()
    let start = nowNs()
    for _ in 0..<n { await floorRound(cLoop, waiter) }
    let wall = nowNs() - start
    waiter.deallocate()
    return wall
  }
  report("future", "tinyasync-floor-continuation", n, Double(wall) / Double(n), "ns/op")
}

// MARK: spawn

func floorTask(n: Int) throws {
  let loop = try EventLoop()
  let (wall, sum) = try loop.runUntilComplete {
    let cLoop = cloop_running_loop()!
    let start = nowNs()
    var tasks: [Task<Int, Never>] = []
    tasks.reserveCapacity(n)
    for i in 0..<n {
      let waiter = LoopThreadOnly(makeWaiter(), cLoop)
      tasks.append(Task(executorPreference: loop) {
        await floorRound(waiter.loop, waiter.waiter)
        waiter.waiter.deallocate()
        return i
      })
    }
    var sum = 0
    for task in tasks { sum += await task.value }
    return (nowNs() - start, sum)
  }
  check(sum == n * (n - 1) / 2, "the tasks' results add up to \(sum), expected \(n * (n - 1) / 2)")
  report("spawn", "tinyasync-floor-task", n, Double(wall) / Double(n), "ns/op")
  report("spawn", "tinyasync-floor-task", n, peakRSSMiB(), "MiB")
}

/// Pointers handed to a task that runs on the same loop thread.
struct LoopThreadOnly: @unchecked Sendable {
  let waiter: UnsafeMutablePointer<FloorWaiter>
  let loop: OpaquePointer
  init(_ waiter: UnsafeMutablePointer<FloorWaiter>, _ loop: OpaquePointer) {
    self.waiter = waiter
    self.loop = loop
  }
}

// MARK: switch

@_silgen_name("swift_task_enterThreadLocalContext")
private func enterThreadLocalContext(_ state: UnsafeMutableRawPointer)

@_silgen_name("swift_task_exitThreadLocalContext")
private func exitThreadLocalContext(_ state: UnsafeMutableRawPointer)

/// The two C tasks' shared state (loop thread only).
struct FloorSwitch {
  var rounds = 0
  var otherRuns = 0
  var wall: UInt64 = 0
}

nonisolated(unsafe) private var floorSwitch = FloorSwitch()

/// One hand-over: the exclusivity state out, the switch, the state back.
@inline(__always)
private func floorYield(_ exclusivity: UnsafeMutableRawPointer) {
  exitThreadLocalContext(exclusivity)
  _ = cloop_sleep(0)
  enterThreadLocalContext(exclusivity)
}

private let floorOther: cloop_task_fn = { _ in
  var exclusivity: (UInt, UInt) = (0, 0)
  withUnsafeMutableBytes(of: &exclusivity) { state in
    for _ in 0...floorSwitch.rounds {
      floorSwitch.otherRuns += 1
      floorYield(state.baseAddress!)
    }
  }
  return 0
}

private let floorMain: cloop_task_fn = { _ in
  var exclusivity: (UInt, UInt) = (0, 0)
  let loop = cloop_task_loop(cloop_current_task())
  var other: OpaquePointer?
  guard cloop_spawn(loop, &other, floorOther, nil, "other") == 0 else { return -1 }
  withUnsafeMutableBytes(of: &exclusivity) { state in
    floorYield(state.baseAddress!)  // the other side starts and parks in its first yield
    let start = nowNs()
    for _ in 0..<floorSwitch.rounds { floorYield(state.baseAddress!) }
    floorSwitch.wall = nowNs() - start
  }
  let r = cloop_task_join(other)
  cloop_task_release(other)
  return r
}

func floorFiberSwitch(n: Int) throws {
  let rounds = (n + 1) / 2
  floorSwitch = FloorSwitch(rounds: rounds)
  var options = cloop_options()
  cloop_options_init(&options)
  options.backend = CLOOP_BACKEND_EPOLL
  let r = cloop_main(floorMain, nil, &options)
  check(r == 0 && floorSwitch.otherRuns == rounds + 1,
        "floor switch: \(r), the other ran \(floorSwitch.otherRuns) times for \(rounds) rounds")
  report("switch", "tinyasync-floor-fiber-switch", 2 * rounds, Double(floorSwitch.wall) / Double(2 * rounds), "ns/op")
}
