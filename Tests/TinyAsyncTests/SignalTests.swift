import Glibc
import Testing
import TinyAsync

/// Signal streams. A signal is the whole process's, and these tests run
/// beside others in one process, so each runs in a child of its own (an
/// exit test, which captures nothing: the bodies are static functions).
@Suite("Signals: EventLoop.signals(_:)")
struct SignalTests {
  /// In a task: an arrival is the next element; one that comes while
  /// nobody waits is kept; closing ends the sequence, and the signal's
  /// previous action is back.
  static func asyncStream(_ backend: EventLoop.Backend) {
    do {
      let loop = try EventLoop(backend: backend)
      let before = currentHandler(SIGUSR1)
      let got: [String] = try loop.runUntilComplete {
        var seen: [String] = []
        let stream = try loop.signals(.user1, .user2)
        kill(getpid(), SIGUSR1)
        if let signal = try await stream.next() { seen.append("\(signal)") }
        kill(getpid(), SIGUSR2)  // nobody waits yet: kept
        try await sleep(for: .milliseconds(20))
        if let signal = try await stream.next() { seen.append("\(signal)") }
        // A task waiting when the stream closes gets nil.
        let waiter = loop.spawn { try await stream.next() == nil ? "nil" : "signal" }
        try await sleep(for: .zero)
        stream.close()
        seen.append(try await waiter.value)
        seen.append(try await stream.next() == nil ? "nil" : "signal")
        return seen
      }
      expectOrExit(got == ["SIGUSR1", "SIGUSR2", "nil", "nil"], "saw \(got)")
      expectOrExit(currentHandler(SIGUSR1) == before, "the previous action is back")
    } catch {
      expectOrExit(false, "\(error)")
    }
  }

  /// In a fiber, with the `for try await` form's twin: next().
  static func fiberStream(_ backend: EventLoop.Backend) {
    do {
      let loop = try EventLoop(backend: backend)
      let got = try loop.runFiberUntilComplete { () throws -> String in
        let stream = try loop.signals(.terminate)
        let sender = loop.spawnFiber {
          try sleep(for: .milliseconds(5))
          kill(getpid(), SIGTERM)  // would end the process without the stream
        }
        let signal = try stream.next()
        try sender.get()
        stream.close()
        return "\(signal.map { "\($0)" } ?? "nil") then \(try stream.next() == nil ? "nil" : "signal")"
      }
      expectOrExit(got == "SIGTERM then nil", "saw \(got)")
    } catch {
      expectOrExit(false, "\(error)")
    }
  }

  static func currentHandler(_ signal: Int32) -> Int {
    var action = sigaction()
    sigaction(signal, nil, &action)
    return unsafeBitCast(action.__sigaction_handler.sa_handler, to: Int.self)
  }

  static func expectOrExit(_ condition: Bool, _ what: String) {
    if !condition {
      print("FAILED: \(what)")
      exit(1)
    }
  }

  @Test func aTaskReadsArrivalsInOrderOnEpoll() async {
    await #expect(processExitsWith: .success) { SignalTests.asyncStream(.epoll) }
  }

  @Test func aTaskReadsArrivalsInOrderOnIoUring() async {
    await #expect(processExitsWith: .success) {
      guard (try? EventLoop(backend: .ioUring)) != nil else { return }  // SKIP: no io_uring
      SignalTests.asyncStream(.ioUring)
    }
  }

  @Test func aFiberWaitsForSIGTERMOnEpoll() async {
    await #expect(processExitsWith: .success) { SignalTests.fiberStream(.epoll) }
  }

  @Test func aFiberWaitsForSIGTERMOnIoUring() async {
    await #expect(processExitsWith: .success) {
      guard (try? EventLoop(backend: .ioUring)) != nil else { return }
      SignalTests.fiberStream(.ioUring)
    }
  }

  @Test func signalsThatCannotBeWatchedAreRefused() throws {
    let loop = try EventLoop()
    #expect(throws: TinyAsyncError.system(errno: EINVAL, message: String(cString: strerror(EINVAL)))) {
      _ = try loop.signals(Signal(SIGKILL))
    }
    #expect(Signal.terminate.description == "SIGTERM")
    #expect(Signal(40).description == "signal 40")
  }
}
