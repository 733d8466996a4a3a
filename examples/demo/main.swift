// The seeds' story, end to end, on TinyAsync: an event loop running
// a thousand sleeping tasks in about one second, gather, a periodic task,
// a future completed by a plain thread (the seeds' fake_io), and an echo
// server with its clients over loopback — on the async front and on fibers.
// Run it with `swift run tinyasync-demo` (or scripts/demo.sh); pass
// `--backend epoll|uring` to choose the poller (default: auto).
import Glibc
import TinyAsync

/// The seeds' `task()`: sleep a random time under a second, report it.
func sleeper(_ seconds: Double) async throws -> Double {
  try await sleep(for: .nanoseconds(Int64(seconds * 1e9)))
  return seconds
}

/// Part 1: 1,000 tasks, each sleeping a random time under a second.
/// Sleeping one after the other would take about 500 s; the loop runs
/// them at once, so it takes about 1 s.
func thousandSleepers(_ loop: EventLoop) async throws {
  let start = loop.now
  let tasks = (0..<1000).map { _ in
    let seconds = Double.random(in: 0..<1)
    return loop.spawn { try await sleeper(seconds) }
  }
  var total = 0.0
  for task in tasks { total += try await task.value }
  let wall = (loop.now - start) / .seconds(1)
  print("1. 1,000 tasks slept \(fmt(total)) s in all, in \(fmt(wall)) s of wall time")
}

/// Part 2: gather returns the results in argument order, typed, whatever
/// order the tasks finish in.
func gatherInOrder(_ loop: EventLoop) async throws {
  var finished: [String] = []
  let a = loop.spawn { () async throws -> Int in
    try await sleep(for: .milliseconds(30)); finished.append("a"); return 1
  }
  let b = loop.spawn { () async throws -> String in
    try await sleep(for: .milliseconds(10)); finished.append("b"); return "two"
  }
  let c = loop.spawn { () async throws -> Double in
    try await sleep(for: .milliseconds(20)); finished.append("c"); return 3.0
  }
  let (one, two, three) = try await gather(a, b, c)
  print("2. gather(a, b, c) = (\(one), \"\(two)\", \(three)); they finished in the order \(finished.joined(separator: ", "))")
}

/// Part 4: the seeds' fake_io. A plain thread does blocking "I/O" (a
/// sleep of the real, thread-blocking kind), then completes a future
/// through the loop's thread-safe path; the task awaiting it never blocks
/// the loop, which goes on running timers meanwhile.
func fakeIO(_ loop: EventLoop) async throws {
  let future = Future<Double>()
  let completer = future.threadSafeCompleter
  let seconds = Double.random(in: 0.1..<0.3)
  let worker = startThread {
    usleep(UInt32(seconds * 1e6))  // blocking, on its own thread
    completer.succeed(seconds)  // loop.call_soon_threadsafe(fut.set_result, t)
  }
  var ticks = 0
  let ticker = loop.spawn {
    while true {
      try await sleep(for: .milliseconds(10))
      ticks += 1
    }
  }
  let result = try await future.value
  ticker.cancel()
  joinThread(worker)
  print("4. a thread blocked \(fmt(result)) s and completed a future through the thread-safe call; meanwhile the loop ran \(ticks) timer ticks")
}

/// Part 7: another program and blocking work, neither stalling the loop: a
/// child process whose output is read as a connection (asyncio's
/// create_subprocess_exec), and a blocking call on the work pool
/// (asyncio's to_thread), while the heartbeat goes on.
func subprocessAndPool(_ loop: EventLoop) async throws {
  let child = try ChildProcess.spawn("sh", arguments: ["-c", "sleep 0.3; echo from a child process"], stdout: .pipe)
  let line = try await child.stdout!.read(until: UInt8(ascii: "\n"))
  let status = try await child.wait()
  let slept = try await offload { () -> Double in
    usleep(300_000)  // a blocking call: on a pool thread, not the loop's
    return 0.3
  }
  print("7. \"\(String(decoding: line.dropLast(), as: UTF8.self))\" (\(status)); a blocking \(fmt(slept)) s call ran on the work pool")
}

func fmt(_ x: Double) -> String {
  let r = (x * 100).rounded() / 100
  return "\(r)"
}

func parseBackend() -> EventLoop.Backend {
  let args = CommandLine.arguments
  guard let i = args.firstIndex(of: "--backend"), i + 1 < args.count else { return .automatic }
  switch args[i + 1] {
  case "epoll": return .epoll
  case "uring", "io_uring": return .ioUring
  case "auto": return .automatic
  default:
    print("usage: tinyasync-demo [--backend auto|epoll|uring]")
    exit(2)
  }
}

func demo() throws {
  let loop = try EventLoop(backend: parseBackend())
  print("TinyAsync demo on the \(loop.backend) backend")
  try loop.runUntilComplete {
    // Part 3: a periodic background task (the seeds' periodical task),
    // running beside everything else until the story ends.
    var beats = 0
    let heartbeat = loop.spawn(name: "heartbeat") {
      while true {
        try await sleep(for: .milliseconds(250))
        beats += 1
      }
    }
    try await thousandSleepers(loop)
    try await gatherInOrder(loop)
    print("3. a periodic task has beaten \(beats) times (every 250 ms) while parts 1 and 2 ran")
    try await fakeIO(loop)
    try await echoDemos(loop)
    try await subprocessAndPool(loop)
    heartbeat.cancel()
  }
  print("done: every task finished on the loop's thread, none left behind")
}

do {
  try demo()
} catch TinyAsyncError.backendUnavailable {
  print("demo: the backend asked for cannot be set up here (\(TinyAsyncError.backendUnavailable))")
  exit(77)  // a skip, for scripts/test.sh
} catch {
  print("demo failed: \(error)")
  exit(1)
}
