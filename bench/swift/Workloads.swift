import Glibc
import TinyAsync

// The workloads. Timing follows bench/cloop_bench.c and the Swift peers
// (shared/peers/swift): the loop is made before the clock; random inputs
// are drawn before it; future, spawn and sleepers are timed inside the
// main task (or fiber), from the first round or spawn to the last result.

let defaultN = ["callbacks": 5_000_000, "switch": 10_000_000, "future": 1_000_000, "spawn": 1_000_000, "sleepers": 100_000]

let workloads: [String: [String: @Sendable (Int) throws -> Void]] = [
  "async": ["callbacks": callbacks, "future": futureAsync, "spawn": spawnAsync, "sleepers": sleepersAsync],
  "fiber": ["switch": switchFiber, "future": futureFiber, "spawn": { try spawnFiber(n: $0) }, "sleepers": { try sleepersFiber(n: $0) }],
  // The fibers of spawn and sleepers on the loop's shared stack (the main
  // fiber keeps a private one), as C's cloop-shared.
  "fiber-shared": ["spawn": { try spawnFiber(n: $0, stack: .shared) }, "sleepers": { try sleepersFiber(n: $0, stack: .shared) }],
  // The floors (Floors.swift): the same work with nothing of TinyAsync's.
  "floor": ["future": floorContinuation, "spawn": floorTask, "switch": floorFiberSwitch],
]

let asyncImpl = "tinyasync-async"
let fiberImpl = "tinyasync-fiber"

func fiberImpl(_ stack: FiberStack) -> String {
  stack == .shared ? "tinyasync-fiber-shared" : fiberImpl
}

// MARK: async front

/// 64 chains of `callSoon`, each callback re-scheduling itself until N have run.
func callbacks(n: Int) throws {
  let loop = try EventLoop()
  var submitted = min(64, n)
  var ran = 0
  var end: UInt64 = 0
  var callback: (() -> Void)?
  callback = {
    ran += 1
    if submitted < n {
      submitted += 1
      loop.callSoon(callback!)
    } else if ran == n {
      end = nowNs()
      callback = nil  // breaks the closure's cycle through itself
    }
  }
  loop.updateTime()
  let start = nowNs()
  for _ in 0..<submitted { loop.callSoon(callback!) }
  try loop.runUntilIdle()
  check(ran == n, "ran \(ran) callbacks, expected \(n)")
  report("callbacks", asyncImpl, n, Double(end - start) / Double(n), "ns/op")
}

/// One task, N times: a Future, a zero-delay callback that succeeds it, await its value.
func futureAsync(n: Int) throws {
  let loop = try EventLoop()
  let wall = try loop.runUntilComplete {
    let start = nowNs()
    for i in 0..<n {
      let future = Future<Int>(on: loop)
      loop.callSoon { future.succeed(i) }
      let value = try await future.value
      check(value == i, "round \(i): awaited \(value)")
    }
    return nowNs() - start
  }
  report("future", asyncImpl, n, Double(wall) / Double(n), "ns/op")
}

/// N spawned tasks, each yielding once and returning i; gather all, check the sum.
func spawnAsync(n: Int) throws {
  let loop = try EventLoop()
  let (wall, sum) = try loop.runUntilComplete {
    let start = nowNs()
    var handles: [TaskHandle<Int>] = []
    handles.reserveCapacity(n)
    for i in 0..<n {
      handles.append(loop.spawn { try await sleep(for: .zero); return i })
    }
    let values = try await gather(handles)
    let wall = nowNs() - start
    return (wall, values.reduce(0, +))
  }
  check(sum == n * (n - 1) / 2, "the tasks' results add up to \(sum), expected \(n * (n - 1) / 2)")
  report("spawn", asyncImpl, n, Double(wall) / Double(n), "ns/op")
  report("spawn", asyncImpl, n, peakRSSMiB(), "MiB")
}

/// N tasks at once, task i sleeping next() % 1000 ms; wait for all.
func sleepersAsync(n: Int) throws {
  let delays = sleeperDelays(n)
  let loop = try EventLoop()
  let wall = try loop.runUntilComplete {
    let start = nowNs()
    var handles: [TaskHandle<Void>] = []
    handles.reserveCapacity(n)
    for delay in delays {
      handles.append(loop.spawn { try await sleep(for: delay) })
    }
    _ = try await gather(handles)
    return nowNs() - start
  }
  report("sleepers", asyncImpl, n, Double(wall) / 1e6, "ms")
  report("sleepers", asyncImpl, n, peakRSSMiB(), "MiB")
}

// MARK: fibers

/// Two fibers hand the thread to each other through the loop (each
/// `sleep(for: .zero)` parks one and resumes the other): N transfers, N
/// rounded up to even. The other fiber is started before the clock.
func switchFiber(n: Int) throws {
  let rounds = (n + 1) / 2
  let loop = try EventLoop()
  let wall = try loop.runFiberUntilComplete {
    let other = loop.spawnFiber {
      for _ in 0...rounds { try sleep(for: .zero) }
    }
    try sleep(for: .zero)  // the other side starts and parks in its first yield
    let start = nowNs()
    for _ in 0..<rounds { try sleep(for: .zero) }
    let wall = nowNs() - start
    try other.get()
    return wall
  }
  report("switch", fiberImpl, 2 * rounds, Double(wall) / Double(2 * rounds), "ns/op")
}

/// The future workload in one fiber.
func futureFiber(n: Int) throws {
  let loop = try EventLoop()
  let wall = try loop.runFiberUntilComplete {
    let start = nowNs()
    for i in 0..<n {
      let future = Future<Int>(on: loop)
      loop.callSoon { future.succeed(i) }
      let value = try future.get()
      check(value == i, "round \(i): got \(value)")
    }
    return nowNs() - start
  }
  report("future", fiberImpl, n, Double(wall) / Double(n), "ns/op")
}

/// The spawn workload with fibers on `stack`, from a main fiber.
func spawnFiber(n: Int, stack: FiberStack = .private) throws {
  let loop = try EventLoop()
  let (wall, sum) = try loop.runFiberUntilComplete {
    let start = nowNs()
    var handles: [FiberHandle<Int>] = []
    handles.reserveCapacity(n)
    for i in 0..<n {
      handles.append(loop.spawnFiber(stack: stack) { try sleep(for: .zero); return i })
    }
    var sum = 0
    for handle in handles { sum += try handle.get() }
    return (nowNs() - start, sum)
  }
  check(sum == n * (n - 1) / 2, "the fibers' results add up to \(sum), expected \(n * (n - 1) / 2)")
  report("spawn", fiberImpl(stack), n, Double(wall) / Double(n), "ns/op")
  report("spawn", fiberImpl(stack), n, peakRSSMiB(), "MiB")
}

/// The sleepers workload with fibers on `stack`.
func sleepersFiber(n: Int, stack: FiberStack = .private) throws {
  let delays = sleeperDelays(n)
  let loop = try EventLoop()
  let wall = try loop.runFiberUntilComplete {
    let start = nowNs()
    var handles: [FiberHandle<Void>] = []
    handles.reserveCapacity(n)
    for delay in delays {
      handles.append(loop.spawnFiber(stack: stack) { try sleep(for: delay) })
    }
    for handle in handles { try handle.get() }
    return nowNs() - start
  }
  report("sleepers", fiberImpl(stack), n, Double(wall) / 1e6, "ms")
  report("sleepers", fiberImpl(stack), n, peakRSSMiB(), "MiB")
}

// MARK: Helpers

/// The delays of sleepers: next() % 1000 ms each, drawn before the clock.
func sleeperDelays(_ n: Int) -> [Duration] {
  var random = SharedRandom()
  return (0..<n).map { _ in .milliseconds(Int64(random.next() % 1000)) }
}

/// The generator every implementation shares (WORKLOADS.md).
struct SharedRandom {
  private var state: UInt64 = 42

  mutating func next() -> UInt64 {
    state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
    return state >> 33
  }
}

/// CLOCK_MONOTONIC in nanoseconds (the clock cloop_bench.c reads).
func nowNs() -> UInt64 {
  var ts = timespec()
  clock_gettime(CLOCK_MONOTONIC, &ts)
  return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}

/// ru_maxrss in MiB.
func peakRSSMiB() -> Double {
  var usage = rusage()
  getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &usage)
  return Double(usage.ru_maxrss) / 1024
}

/// One RESULT line, value with two decimals as cloop_bench.c prints it.
func report(_ workload: String, _ impl: String, _ n: Int, _ value: Double, _ unit: String) {
  let cents = Int((value * 100).rounded())
  let fraction = cents % 100
  print("RESULT workload=\(workload) impl=\(impl) n=\(n) value=\(cents / 100).\(fraction < 10 ? "0" : "")\(fraction) unit=\(unit)")
  fflush(nil)  // all streams: stdout is a global Swift 6 will not touch
}

func check(_ condition: Bool, _ message: @autoclosure () -> String) {
  if !condition { fail(message()) }
}

/// A message on stderr, exit 1.
func fail(_ message: String) -> Never {
  let line = "tinyasync-bench: \(message)\n"
  _ = line.withCString { write(2, $0, strlen($0)) }
  exit(1)
}

func usage() -> Never {
  let line = """
    usage: tinyasync-bench callbacks|future|spawn|sleepers --impl async
           tinyasync-bench switch|future|spawn|sleepers --impl fiber          [--n N]
           tinyasync-bench spawn|sleepers --impl fiber-shared
           tinyasync-bench future|spawn|switch --impl floor

    """
  _ = line.withCString { write(2, $0, strlen($0)) }
  exit(2)
}
