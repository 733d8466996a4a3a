// A tour of TinyAsync's callback level: call_soon, timers (one cancelled),
// a thread-safe call from another thread, and stop(). Exits by itself in
// about a quarter of a second.
import Glibc
import TinyAsync

func demo() throws {
  let loop = try EventLoop()
  print("TinyAsync demo on \(loop.backend)")
  let clock = DemoClock(start: loop.now)
  func say(_ what: String) { clock.say(loop, what) }

  // callSoon: FIFO; one scheduled from a callback waits for the next batch.
  loop.callSoon { say("callSoon 1") }
  loop.callSoon {
    say("callSoon 2 (schedules callSoon 3)")
    loop.callSoon { say("callSoon 3, one iteration later") }
  }

  // Timers fire in deadline order, whatever order they were scheduled in.
  loop.callLater(.milliseconds(150)) { say("timer 150 ms") }
  loop.callLater(.milliseconds(50)) { say("timer 50 ms") }
  let cancelled = loop.callLater(.milliseconds(100)) { say("timer 100 ms (never: cancelled)") }
  loop.callSoon { say("cancelling the 100 ms timer: \(cancelled.cancel())") }

  // A worker thread reaches the loop only through its thread-safe handle.
  let handle = loop.threadSafeHandle
  loop.ref()  // keep run() going until the worker has called in
  let worker = startThread {
    usleep(80_000)
    let answer = 6 * 7
    handle.call { loop in  // runs on the loop thread, handed the loop
      clock.say(loop, "thread-safe call from a worker thread: answer \(answer)")
      loop.unref()
    }
  }

  // A ticking timer that stops the loop on its third tick.
  var ticks = 0
  func tick() {
    ticks += 1
    say("tick \(ticks)")
    if ticks == 3 {
      say("stop()")
      loop.stop()
    } else {
      loop.callLater(.milliseconds(70), tick)
    }
  }
  loop.callLater(.milliseconds(200), tick)

  try loop.run()
  joinThread(worker)
  say("run() returned; \(loop.pendingTimerCount) timer(s) left pending")
}

/// Prints what happens with the loop's time since the start.
struct DemoClock: Sendable {
  let start: Duration
  func say(_ loop: EventLoop, _ what: String) {
    let ms = String(Int(((loop.now - start) / .milliseconds(1)).rounded()))
    print("[\(String(repeating: " ", count: max(0, 4 - ms.count)))\(ms) ms] \(what)")
  }
}

do {
  try demo()
} catch {
  print("demo failed: \(error)")
  exit(1)
}
