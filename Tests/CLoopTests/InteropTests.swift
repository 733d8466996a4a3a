import CLoop
import Glibc
import Testing

/// What the callbacks of one test saw, in order. Their C nodes' `arg` is
/// this object, unretained: the test keeps it alive until the loop is
/// freed.
private final class Trace {
  let loop: OpaquePointer
  let watcher: UnsafeMutablePointer<cloop_watcher>
  var events: [String] = []
  var timerLate = false

  init(loop: OpaquePointer, watcher: UnsafeMutablePointer<cloop_watcher>) {
    self.loop = loop
    self.watcher = watcher
  }

  static func from(_ arg: UnsafeMutableRawPointer?) -> Trace {
    Unmanaged<Trace>.fromOpaque(arg!).takeUnretainedValue()
  }
}

// The callbacks: Swift closures as C function pointers (`cloop_fn`), which
// capture nothing and find their state through `arg`.
private let soonRan: cloop_fn = { arg in Trace.from(arg).events.append("soon") }

private let timerFired: cloop_fn = { arg in
  let trace = Trace.from(arg)
  trace.events.append("timer")
}

private let readable: cloop_fn = { arg in
  let trace = Trace.from(arg)
  var byte: UInt8 = 0
  if read(trace.watcher.pointee.fd, &byte, 1) == 1 { trace.events.append("read \(Character(UnicodeScalar(byte)))") }
  trace.events.append("unwatch \(cloop_unwatch(trace.loop, trace.watcher))")
}

/// One call from another thread: its handle inside a Swift struct, found
/// again from the handle's `arg` (the record's address).
private struct Call {
  var handle = cloop_handle()
  var index = 0
  var runs = 0
  var counter: UnsafeMutablePointer<Int>?
  var loop: OpaquePointer?

  /// The handle's address inside the record: its offset, as C's
  /// `offsetof` would give it.
  static func handle(of call: UnsafeMutablePointer<Call>) -> UnsafeMutablePointer<cloop_handle> {
    (UnsafeMutableRawPointer(call) + MemoryLayout<Call>.offset(of: \.handle)!)
      .assumingMemoryBound(to: cloop_handle.self)
  }
}

private let callArrived: cloop_fn = { arg in
  let call = arg!.assumingMemoryBound(to: Call.self)
  call.pointee.runs += 1
  call.pointee.counter!.pointee += 1
  if call.pointee.counter!.pointee == 1000 { cloop_unref(call.pointee.loop!) }
}

@Suite("The C API, called from Swift")
struct InteropTests {
  /// The header's types, constants and callbacks as Swift sees them: a
  /// handle, a timer and a watcher in memory the test owns, calling back
  /// into Swift in the loop's order (the ready handle, then the fd that was
  /// already readable, then the timer).
  @Test(arguments: BackendUnderTest.allCases)
  func handlesTimersAndWatchersCallBackIntoSwift(_ backend: BackendUnderTest) throws {
    let loop = try makeLoop(backend)
    #expect(cloop_loop_backend(loop) == backend.cValue)
    #expect(String(cString: cloop_backend_name(backend.cValue)) == (backend == .epoll ? "epoll" : "io_uring"))

    let handle = records(cloop_handle())
    let timer = records(cloop_timer())
    let watcher = records(cloop_watcher())
    defer {
      handle.deallocate()
      timer.deallocate()
      watcher.deallocate()
    }
    var fds: [Int32] = [-1, -1]
    try #require(pipe(&fds) == 0)  // pipe2 is behind _GNU_SOURCE, which Glibc's module lacks
    defer { fds.forEach { _ = close($0) } }
    for fd in fds { try #require(fcntl(fd, F_SETFL, O_NONBLOCK) == 0) }

    let trace = Trace(loop: loop, watcher: watcher)
    let arg = Unmanaged.passUnretained(trace).toOpaque()
    cloop_handle_init(handle, soonRan, arg)
    cloop_timer_init(timer, timerFired, arg)
    cloop_watcher_init(watcher)
    #expect(timer.pointee.index == CLOOP_TIMER_IDLE)

    let start = cloop_now(loop)
    #expect(cloop_call_later(loop, timer, 50_000_000) == 0)  // 50 ms
    #expect(timer.pointee.deadline == start + 50_000_000)
    #expect(cloop_timer_count(loop) == 1)
    cloop_call_soon(loop, handle)
    #expect(cloop_handle_queued(handle) == 1)
    #expect(cloop_watch(loop, watcher, fds[0], Int32(CLOOP_READABLE), readable, arg) == 0)
    var byte = UInt8(ascii: "x")
    #expect(write(fds[1], &byte, 1) == 1)

    #expect(cloop_run(loop) == 0)  // returns when nothing is left
    #expect(trace.events == ["soon", "read x", "unwatch 1", "timer"])
    #expect(cloop_now(loop) >= start + 50_000_000)
    #expect(cloop_loop_free(loop) == 0)
    withExtendedLifetime(trace) {}
  }

  /// `cloop_call_threadsafe` from threads Swift started, each call's handle
  /// embedded in a Swift struct.
  @Test func threadSafeCallsFromSwiftThreads() throws {
    let loop = try makeLoop()
    let total = 1000
    let calls = records(Call(), count: total)
    let counter = records(0)
    defer {
      calls.deinitialize(count: total)
      calls.deallocate()
      counter.deallocate()
    }
    for i in 0..<total {
      let call = calls + i
      call.pointee.index = i
      call.pointee.counter = counter
      call.pointee.loop = loop
      cloop_handle_init(Call.handle(of: call), callArrived, UnsafeMutableRawPointer(call))
    }
    cloop_ref(loop)  // until the last call has arrived
    let shared = Unchecked(value: (loop, calls))
    let threads = (0..<2).map { t in
      startThread {
        let (loop, calls) = shared.value
        for i in stride(from: t, to: total, by: 2) { cloop_call_threadsafe(loop, Call.handle(of: calls + i)) }
      }
    }
    #expect(cloop_run(loop) == 0)
    threads.forEach(joinThread)  // before freeing: a caller may still be waking the loop
    #expect(counter.pointee == total)
    #expect(UnsafeMutableBufferPointer(start: calls, count: total).allSatisfy { $0.runs == 1 })
    #expect(cloop_loop_free(loop) == 0)
  }

  /// The library's own codes arrive as Swift constants, below the errno
  /// range, each with its text.
  @Test func errorCodesAndTheirText() {
    for code in [CLOOP_ENOBACKEND, CLOOP_ENOHOST, CLOOP_ENODELIM] {
      #expect(code < -4095)
      #expect(!message(code).isEmpty && message(code) != message(-ENOENT))
    }
    #expect(message(-ECONNREFUSED) == String(cString: strerror(ECONNREFUSED)))
  }
}
